//! The in-process demo runs every kind of step and says so.

use std::cell::RefCell;
use std::rc::Rc;

#[test]
fn demo_transcript_shows_emit_recall_return_cancel_and_an_error() {
    let lines = Rc::new(RefCell::new(Vec::<String>::new()));
    let l = lines.clone();
    stagebus::demo::transcript(move |line| l.borrow_mut().push(line.to_string())).unwrap();
    let text = lines.borrow().join("\n");
    println!("{text}");
    for expected in [
        "caller: <- return {\"text\":\"hi\"}",
        "caller: <- tick {\"i\":3}",
        "caller: <- return {\"count\":3}",
        "caller: <- question {\"text\":\"What is your name?\"}",
        "caller: <- return {\"greeting\":\"Hello, POE!\"}",
        "service: slow: cancelled by the caller, timer stopped",
        "caller: <- error no_such_method: Session 'Demo' has no method 'nope'",
        "done",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}
