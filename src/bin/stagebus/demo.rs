//! `stagebus demo`: a broker, a service and a caller in one process, with
//! what happens printed as it happens.

use crate::command_line::Parsed;
use crate::{say, Failure};

pub(crate) fn cmd_demo(_args: &Parsed) -> Result<(), Failure> {
    stagebus::demo::transcript(say).map_err(Failure::from)
}
