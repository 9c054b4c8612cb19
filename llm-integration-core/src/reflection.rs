//! The reflection integration's answers (a VM asking about itself): the
//! JSON of each path, decided from the snapshot alone.
//!
//! `GET /` lists the exposed paths with a description; `/email` (the
//! owner's), `/integrations` (every integration attached to this VM, with
//! `name`, `type`, `scope`, `hostname`, `comment` and a one-line `help`),
//! `/tags`, `/comment`, `/default_port`. Never a key or a source.

use serde_json::{json, Value};

use crate::domain::ReflectionField;
use crate::host::hostname;
use crate::integration::Integration;
use crate::router::{ReflectionPath, ReflectionRoute};
use crate::snapshot::Snapshot;

/// What a path tells.
pub const fn describe(field: ReflectionField) -> &'static str {
    match field {
        ReflectionField::Email => "the email of this VM's owner",
        ReflectionField::Integrations => {
            "every integration attached to this VM, with how to use it"
        }
        ReflectionField::Tags => "this VM's tags",
        ReflectionField::Comment => "this VM's comment",
        ReflectionField::DefaultPort => "this VM's default port",
    }
}

/// The JSON answer to a reflection request.
pub fn answer(snapshot: &Snapshot, route: &ReflectionRoute<'_>) -> Value {
    let vm = route.vm;
    match route.path {
        ReflectionPath::Index => {
            let paths: Vec<Value> = route
                .settings
                .fields
                .iter()
                .map(|f| json!({"path": format!("/{}", f.as_str()), "description": describe(f)}))
                .collect();
            json!({ "paths": paths })
        }
        ReflectionPath::Field(ReflectionField::Email) => {
            json!({"email": snapshot.user(vm.owner).map(|u| u.email.as_str())})
        }
        ReflectionPath::Field(ReflectionField::Integrations) => {
            let list: Vec<Value> = snapshot
                .attached_to(vm.id)
                .into_iter()
                .map(|(scope, i)| {
                    let host = hostname(i.name.as_str(), scope, snapshot.domain());
                    json!({"name": i.name, "type": i.kind.type_name(), "scope": scope, "hostname": host,
                           "comment": i.comment, "help": i.kind.help(&host)})
                })
                .collect();
            json!({ "integrations": list })
        }
        ReflectionPath::Field(ReflectionField::Tags) => json!({"tags": vm.tags}),
        ReflectionPath::Field(ReflectionField::Comment) => json!({"comment": vm.comment}),
        ReflectionPath::Field(ReflectionField::DefaultPort) => {
            json!({"default_port": vm.default_port})
        }
    }
}
