//! Splitting a pipeline by hash slot, for Redis Cluster. A node answers only
//! for the slots it owns, and the cluster client refuses a pipeline whose
//! commands route to different slots; so such a pipeline goes as one
//! sub-pipeline per slot, and the replies are put back in the pipeline's
//! order.

use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, Pipeline, Value};

/// Commands named by their first argument that touch no key: PUBLISH (every
/// node of a cluster passes a message on to every other), and the server
/// commands a store might send along.
const KEYLESS: [&str; 6] = ["PUBLISH", "PING", "ECHO", "TIME", "SCRIPT", "FUNCTION"];

/// Script calls: `EVALSHA sha numkeys key…`, their first key third after
/// the name.
const SCRIPT_CALLS: [&str; 6] = [
    "EVAL",
    "EVALSHA",
    "EVAL_RO",
    "EVALSHA_RO",
    "FCALL",
    "FCALL_RO",
];

/// The commands of a pipeline that go to one hash slot: their indexes in the
/// pipeline, in pipeline order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SlotGroup {
    /// `None` when no command of the pipeline names a key.
    pub slot: Option<Slot>,
    pub commands: Vec<usize>,
}

impl SlotGroup {
    /// The group's commands as a pipeline of their own.
    pub fn pipeline(&self, whole: &Pipeline) -> Pipeline {
        let commands: Vec<&Cmd> = whole.cmd_iter().collect();
        let mut part = Pipeline::with_capacity(self.commands.len());
        for &index in &self.commands {
            part.add_command(commands[index].clone());
        }
        part
    }
}

/// Groups the commands of `pipeline` by the slot of their first key, in the
/// order each slot first appears. A command without a key goes with the
/// command before it (the first group when it leads), so that a PUBLISH
/// still follows the write it announces.
pub(crate) fn group_by_slot(pipeline: &Pipeline) -> Vec<SlotGroup> {
    let mut groups: Vec<SlotGroup> = Vec::new();
    let mut leading_keyless = Vec::new();
    let mut current: Option<usize> = None;
    for (index, command) in pipeline.cmd_iter().enumerate() {
        match (first_key(command).map(Slot::for_key), current) {
            (Some(slot), _) => {
                let group = match groups.iter().position(|group| group.slot == Some(slot)) {
                    Some(found) => found,
                    None => {
                        groups.push(SlotGroup {
                            slot: Some(slot),
                            commands: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                groups[group].commands.push(index);
                current = Some(group);
            }
            (None, Some(group)) => groups[group].commands.push(index),
            (None, None) => leading_keyless.push(index),
        }
    }
    match groups.first_mut() {
        Some(first) => {
            leading_keyless.append(&mut first.commands);
            first.commands = leading_keyless;
        }
        None => groups.push(SlotGroup {
            slot: None,
            commands: leading_keyless,
        }),
    }
    groups
}

/// Puts the replies of each group (in the group's order) back in the order
/// of the pipeline of `len` commands they were split from.
pub(crate) fn reassemble(len: usize, groups: &[SlotGroup], replies: Vec<Vec<Value>>) -> Vec<Value> {
    let mut ordered = vec![Value::Nil; len];
    for (group, group_replies) in groups.iter().zip(replies) {
        for (&index, reply) in group.commands.iter().zip(group_replies) {
            ordered[index] = reply;
        }
    }
    ordered
}

/// The key a command routes by: its first key, or `None` for a command that
/// names none.
fn first_key(command: &Cmd) -> Option<&[u8]> {
    let mut args = command.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()??;
    let is = |names: &[&str]| {
        names
            .iter()
            .any(|known| name.eq_ignore_ascii_case(known.as_bytes()))
    };
    if is(&KEYLESS) {
        return None;
    }
    if is(&SCRIPT_CALLS) {
        let _script = args.next()?;
        let key_count: usize = std::str::from_utf8(args.next()??).ok()?.parse().ok()?;
        if key_count == 0 {
            return None;
        }
    }
    args.next()?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(groups: &[SlotGroup]) -> Vec<Vec<usize>> {
        groups.iter().map(|group| group.commands.clone()).collect()
    }

    #[test]
    fn commands_are_grouped_by_hash_tag_and_keyless_ones_follow_the_command_before() {
        let mut pipe = redis::pipe();
        pipe.zadd("orders:deadlines:{east}", "payment:o1", 5)
            .ignore()
            .cmd("ZADD")
            .arg("orders:buyer:{b1}")
            .arg("NX")
            .arg(1)
            .arg("o1")
            .ignore()
            .zadd("orders:outbox:{east}", "o1", 5)
            .ignore()
            .cmd("EVALSHA")
            .arg("f00d")
            .arg(1)
            .arg("orders:{o1}:order")
            .arg(7)
            .publish("orders:watch:o1", "o1")
            .ignore()
            .cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1");
        let groups = group_by_slot(&pipe);
        assert_eq!(indexes(&groups), [vec![0, 2], vec![1], vec![3, 4, 5]]);
        assert_eq!(groups[0].slot, Some(Slot::for_key("east")));
        assert_eq!(groups[2].slot, Some(Slot::for_key("o1")));
        let part = groups[2].pipeline(&pipe);
        assert_eq!(part.len(), 3);
        assert_eq!(
            part.cmd_iter()
                .next()
                .map(|command| command.get_packed_command()),
            pipe.cmd_iter()
                .nth(3)
                .map(|command| command.get_packed_command())
        );
    }

    #[test]
    fn a_pipeline_of_one_slot_or_of_no_key_stays_whole() {
        let mut pipe = redis::pipe();
        pipe.publish("watch", "o1")
            .hgetall("catalog:{p1}:lots")
            .hgetall("catalog:{p1}:reservations")
            .cmd("EVAL")
            .arg("return 1")
            .arg(0);
        assert_eq!(indexes(&group_by_slot(&pipe)), [vec![0, 1, 2, 3]]);
        let mut keyless = redis::pipe();
        keyless.cmd("PING").cmd("TIME");
        let groups = group_by_slot(&keyless);
        assert_eq!(
            groups,
            [SlotGroup {
                slot: None,
                commands: vec![0, 1]
            }]
        );
    }

    #[test]
    fn replies_go_back_in_pipeline_order() {
        let mut pipe = redis::pipe();
        for product in ["a", "b", "a", "c", "b"] {
            pipe.hget(format!("catalog:{{{product}}}:product"), "price_fen");
        }
        let groups = group_by_slot(&pipe);
        assert_eq!(indexes(&groups), [vec![0, 2], vec![1, 4], vec![3]]);
        let replies = vec![
            vec![Value::Int(0), Value::Int(2)],
            vec![Value::Int(1), Value::Int(4)],
            vec![Value::Int(3)],
        ];
        let ordered = reassemble(pipe.len(), &groups, replies);
        assert_eq!(ordered, (0..5).map(Value::Int).collect::<Vec<_>>());
    }
}
