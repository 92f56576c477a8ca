//! The event contract (`contracts/asyncapi.yaml`, checked against `proto/` and
//! the courier doc by `make contracts-check`) agrees with what the bus does:
//! each event type is owned by the stream its `.proto` file is named after,
//! and the channel addresses are the topics the topology builds.

use harvest_bus::event::{event_type, owning_stream};
use harvest_bus::{BusConfig, Envelope, Stream, Topology};
use harvest_domain::{Region, Regions};
use prost::Message;
use prost_types::FileDescriptorSet;

const ASYNCAPI: &str = include_str!("../../../../contracts/asyncapi.yaml");

/// Every member of the envelope's `payload` oneof, with the `.proto` file that
/// defines its message.
fn payload_members() -> Vec<(String, i32, String)> {
    let descriptors =
        FileDescriptorSet::decode(harvest_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let file_of = |type_name: &str| {
        descriptors
            .file
            .iter()
            .find(|file| {
                file.message_type
                    .iter()
                    .any(|message| type_name == format!(".{}.{}", file.package(), message.name()))
            })
            .map(|file| file.name().to_owned())
            .unwrap_or_default()
    };
    let envelope = descriptors
        .file
        .iter()
        .flat_map(|file| file.message_type.iter())
        .find(|message| message.name() == "Envelope")
        .expect("Envelope in the descriptor set");
    envelope
        .field
        .iter()
        .filter(|field| field.oneof_index.is_some())
        .map(|field| {
            (
                field.type_name().trim_start_matches('.').to_owned(),
                field.number(),
                file_of(field.type_name()),
            )
        })
        .collect()
}

#[test]
fn each_event_type_is_owned_by_the_stream_its_proto_file_is_named_after() {
    let members = payload_members();
    assert!(members.len() > 20, "{members:?}");
    for (type_name, number, file) in members {
        // An envelope whose payload is this member, empty: its tag and a
        // zero length.
        let tag = u32::try_from(number).expect("positive field number") << 3 | 2;
        let mut bytes = Vec::new();
        prost::encoding::encode_varint(u64::from(tag), &mut bytes);
        bytes.push(0);
        let envelope = Envelope::decode(bytes.as_slice()).expect("decodes");
        let payload = envelope.payload.expect("the member is a payload");
        assert_eq!(event_type(&payload), type_name);
        let stream = owning_stream(&payload);
        assert_eq!(
            file,
            format!("harvest/events/v1/{}.proto", stream.name()),
            "{type_name} belongs to the {stream} stream: its message must be defined in that \
             stream's file, which the AsyncAPI document's channels follow"
        );
    }
}

#[test]
fn asyncapi_channel_addresses_are_the_topologys_topics() {
    let topology = Topology::new(&BusConfig::default(), Regions::default());
    let east = Region::parse("east").expect("valid");
    let template = |topic: String| topic.replace(".east", ".{region}");
    for stream in Stream::ALL {
        let address = template(topology.topic(stream, &east));
        assert!(
            ASYNCAPI.contains(&format!("address: {address}\n")),
            "contracts/asyncapi.yaml has no channel `{address}`"
        );
    }
    let dead_letters =
        template(topology.dead_letter_topic("SERVICE", &east)).replace("SERVICE", "{service}");
    assert!(
        ASYNCAPI.contains(&format!("address: {dead_letters}\n")),
        "contracts/asyncapi.yaml has no channel `{dead_letters}`"
    );
    let listed = ASYNCAPI
        .lines()
        .find(|line| line.trim_start().starts_with("enum: [north"))
        .expect("the region parameter's enum");
    for region in Regions::default().iter() {
        assert!(
            listed.contains(&format!("[{region},"))
                || listed.contains(&format!(" {region},"))
                || listed.contains(&format!(" {region}]")),
            "contracts/asyncapi.yaml does not list region {region}: {listed}"
        );
    }
}
