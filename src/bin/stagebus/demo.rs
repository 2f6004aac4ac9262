//! `stagebus demo`: a broker, a service and a caller in one process, with
//! what happens printed as it happens.

use crate::{say, Failure};

/// `stagebus demo` takes no flags.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {}

pub(crate) fn cmd_demo(_args: &DemoArgs) -> Result<(), Failure> {
    stagebus::demo::transcript(say).map_err(Failure::from)
}
