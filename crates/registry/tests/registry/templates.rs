//! Metadata templates: kept with the prefix, inherited, and checked on
//! every write path of the registry.

use crate::support::{Fixture, url};
use idnode_core::{Record, Value};
use idnode_registry::{BatchItem, RegistryError, Template};

/// A template of each kind, two of them required.
const TEMPLATE: &str = r#"{
  "strict": false,
  "fields": [
    {"type": "URL", "kind": "url", "required": true, "max_count": 1},
    {"type": "productName", "kind": "text", "required": true, "max_length": 20},
    {"type": "quantity", "kind": "integer", "min": 1, "max": 1000},
    {"type": "weight", "kind": "decimal", "min": "0", "max": "99.5"},
    {"type": "productionDate", "kind": "date", "min": "2000-01-01"},
    {"type": "status", "kind": "enum", "values": ["active", "recalled"]}
  ]
}"#;

fn template() -> Template {
    Template::from_json(TEMPLATE).unwrap()
}

fn v(index: u32, kind: &str, data: &str) -> Value {
    Value::new(index, kind, data.to_owned())
}

/// A record that satisfies [`TEMPLATE`].
fn good() -> Vec<Value> {
    vec![
        url(1, "https://example.com/p/1"),
        v(2, "productName", "Gear pump"),
        v(3, "quantity", "12"),
        v(4, "weight", "7.25"),
        v(5, "productionDate", "2026-03-24"),
        v(6, "status", "active"),
    ]
}

/// For each kind of rule: a value list that breaks it, the field the
/// refusal must name, and words of the rule.
fn broken() -> Vec<(&'static str, Vec<Value>, &'static str, &'static str)> {
    let with = |at: usize, value: Value| {
        let mut values = good();
        values[at] = value;
        values
    };
    let mut extra_url = good();
    extra_url.push(url(7, "https://example.com/other"));
    let mut no_name = good();
    no_name.remove(1);
    vec![
        (
            "url",
            with(0, url(1, "not a url")),
            "values[0].data",
            "absolute http or https URL",
        ),
        (
            "text",
            with(1, v(2, "productName", "a name far longer than twenty")),
            "values[1].data",
            "at most 20 characters",
        ),
        (
            "integer",
            with(2, v(3, "quantity", "1001")),
            "values[2].data",
            "integer from 1 to 1000",
        ),
        (
            "decimal",
            with(3, v(4, "weight", "99.51")),
            "values[3].data",
            "decimal number",
        ),
        (
            "date",
            with(4, v(5, "productionDate", "2026-02-30")),
            "values[4].data",
            "YYYY-MM-DD",
        ),
        (
            "enum",
            with(5, v(6, "status", "lost")),
            "values[5].data",
            "one of \"active\", \"recalled\"",
        ),
        (
            "max_count",
            extra_url,
            "values[6].type",
            "at most 1 value of type URL",
        ),
        (
            "required",
            no_name,
            "values",
            "a value of type productName is required",
        ),
    ]
}

fn fixture() -> Fixture {
    let f = Fixture::with_prefix();
    f.registry.set_template("88.100.1", template()).unwrap();
    f
}

fn assert_refused(e: &RegistryError, field: &str, identifier: &str, rule: &str) {
    match e {
        RegistryError::InvalidArgument { field: f, message } => {
            assert_eq!(f, field, "{e}");
            assert!(message.contains(&format!("identifier {identifier}")), "{e}");
            assert!(message.contains(rule), "{e}");
            assert!(message.contains("template of prefix 88.100.1"), "{e}");
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn a_template_is_kept_with_its_prefix_and_read_back() {
    let f = fixture();
    let info = f.registry.get_prefix("88.100.1").unwrap();
    assert_eq!(info.template, Some(template()));
    let applied = f.registry.template_for("88.100.1").unwrap().unwrap();
    assert_eq!(
        (applied.prefix.as_str(), applied.template),
        ("88.100.1", template())
    );
    assert_eq!(
        f.registry.list_prefixes().unwrap()[0].template,
        Some(template())
    );

    f.registry.delete_template("88.100.1").unwrap();
    assert_eq!(f.registry.template_for("88.100.1").unwrap(), None);
    assert!(matches!(
        f.registry.delete_template("88.100.1"),
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        f.registry.set_template("99.1", template()),
        Err(RegistryError::NotFound(_))
    ));
    let mut bad = template();
    bad.fields[2].value_type = "HS_ADMIN".into();
    match f.registry.set_template("88.100.1", bad) {
        Err(RegistryError::InvalidArgument { field, .. }) => {
            assert_eq!(field, "template.fields[2].type")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_refuses_each_broken_rule_and_stores_nothing() {
    let f = fixture();
    for (rule, values, field, words) in broken() {
        let sequence = f.sequence();
        let e = f
            .registry
            .create_identifier("88.100.1/P", values.clone(), false)
            .unwrap_err();
        assert_refused(&e, field, "88.100.1/P", words);
        assert_eq!(f.sequence(), sequence, "{rule}: nothing stored");
        assert!(matches!(
            f.registry.get_identifier("88.100.1/P"),
            Err(RegistryError::NotFound(_))
        ));
    }
    let record = f
        .registry
        .create_identifier("88.100.1/P", good(), false)
        .unwrap();
    assert_eq!(record.values.len(), 6);
    // Overwriting is judged the same way.
    let (_, values, field, words) = broken().swap_remove(3);
    let e = f
        .registry
        .create_identifier("88.100.1/P", values, true)
        .unwrap_err();
    assert_refused(&e, field, "88.100.1/P", words);
    assert_eq!(f.registry.get_identifier("88.100.1/P").unwrap(), record);
}

#[test]
fn positions_follow_the_request_not_the_index_order() {
    let f = fixture();
    let mut values = good();
    values.reverse();
    values[0] = v(6, "status", "lost"); // sent first, stored last
    let e = f
        .registry
        .create_identifier("88.100.1/R", values, false)
        .unwrap_err();
    assert_refused(&e, "values[0].data", "88.100.1/R", "one of");
}

#[test]
fn other_types_pass_unless_strict_and_system_types_always_do() {
    let f = fixture();
    let mut values = good();
    values.push(v(7, "note", "anything"));
    values.push(Value::new(100, "HS_ADMIN", vec![0x0f, 0xff]));
    f.registry
        .create_identifier("88.100.1/A", values.clone(), false)
        .unwrap();

    let mut strict = template();
    strict.strict = true;
    f.registry.set_template("88.100.1", strict).unwrap();
    let e = f
        .registry
        .create_identifier("88.100.1/B", values.clone(), false)
        .unwrap_err();
    assert_refused(
        &e,
        "values[6].type",
        "88.100.1/B",
        "type note is not in the template",
    );
    values.remove(6);
    f.registry
        .create_identifier("88.100.1/B", values, false)
        .unwrap();
}

fn record(f: &Fixture, id: &str) -> Record {
    f.registry.get_identifier(id).unwrap()
}

#[test]
fn add_modify_and_remove_are_checked() {
    let f = fixture();
    f.registry
        .create_identifier("88.100.1/P", good(), false)
        .unwrap();
    let before = record(&f, "88.100.1/P");
    let sequence = f.sequence();

    // add: a bad value, named by its place in the request; a second URL.
    let e = f
        .registry
        .add_values(
            "88.100.1/P",
            vec![v(8, "note", "ok"), v(9, "quantity", "0")],
        )
        .unwrap_err();
    assert_refused(&e, "values[1].data", "88.100.1/P", "integer from 1 to 1000");
    let e = f
        .registry
        .add_values("88.100.1/P", vec![url(9, "https://a.example")])
        .unwrap_err();
    assert_refused(
        &e,
        "values[0].type",
        "88.100.1/P",
        "at most 1 value of type URL",
    );
    // put (Handle ADD_VALUE with OW) goes the same way.
    let e = f
        .registry
        .put_values("88.100.1/P", vec![v(4, "weight", "heavy")])
        .unwrap_err();
    assert_refused(&e, "values[0].data", "88.100.1/P", "decimal number");

    // modify: bad data; a change of type that drops a required one.
    let e = f
        .registry
        .modify_values("88.100.1/P", vec![v(5, "productionDate", "1999-12-31")])
        .unwrap_err();
    assert_refused(&e, "values[0].data", "88.100.1/P", "of at least 2000-01-01");
    let e = f
        .registry
        .modify_values("88.100.1/P", vec![v(2, "note", "renamed")])
        .unwrap_err();
    assert_refused(
        &e,
        "values",
        "88.100.1/P",
        "a value of type productName is required",
    );

    // remove: the last value of a required type stays.
    let e = f.registry.remove_values("88.100.1/P", &[6, 1]).unwrap_err();
    assert_refused(
        &e,
        "indexes[1]",
        "88.100.1/P",
        "a value of type URL is required",
    );

    assert_eq!(f.sequence(), sequence, "nothing stored");
    assert_eq!(record(&f, "88.100.1/P"), before);

    // Valid changes land.
    f.registry
        .add_values("88.100.1/P", vec![v(8, "quantity", "3")])
        .unwrap();
    f.registry
        .modify_values("88.100.1/P", vec![v(6, "status", "recalled")])
        .unwrap();
    f.registry.remove_values("88.100.1/P", &[3, 4]).unwrap();
    let after = record(&f, "88.100.1/P");
    assert_eq!(after.value(6).unwrap().data.as_ref(), b"recalled");
    assert!(after.value(3).is_none() && after.value(8).is_some());
}

#[test]
fn batch_items_are_judged_alone() {
    let f = fixture();
    let mut items: Vec<BatchItem> = broken()
        .into_iter()
        .enumerate()
        .map(|(n, (_, values, _, _))| BatchItem {
            identifier: format!("88.100.1/B{n}"),
            values,
            overwrite: false,
        })
        .collect();
    items.push(BatchItem {
        identifier: "88.100.1/GOOD".into(),
        values: good(),
        overwrite: false,
    });
    let results = f.registry.batch_create(items);
    for (n, ((_, _, field, words), result)) in broken().into_iter().zip(&results).enumerate() {
        let e = result.as_ref().unwrap_err();
        assert_refused(e, field, &format!("88.100.1/B{n}"), words);
        assert!(
            f.registry
                .get_identifier(&format!("88.100.1/B{n}"))
                .is_err()
        );
    }
    assert!(results.last().unwrap().is_ok());
    assert_eq!(record(&f, "88.100.1/GOOD").values.len(), 6);
}

#[test]
fn a_sub_prefix_inherits_its_parents_template_unless_it_has_its_own() {
    let f = Fixture::new();
    for p in ["88", "88.100", "88.100.1", "88.100.2"] {
        f.registry.create_prefix(p).unwrap();
    }
    f.registry.set_template("88.100", template()).unwrap();
    // 88.100.1 inherits from 88.100, the nearest prefix with a template.
    let applied = f.registry.template_for("88.100.1").unwrap().unwrap();
    assert_eq!(applied.prefix, "88.100");
    let e = f
        .registry
        .create_identifier("88.100.1/X", vec![url(1, "https://a.example")], false)
        .unwrap_err();
    assert!(e.to_string().contains("template of prefix 88.100)"), "{e}");
    assert!(e.to_string().contains("identifier 88.100.1/X"), "{e}");
    // A prefix above has none: nothing applies.
    assert_eq!(f.registry.template_for("88").unwrap(), None);
    f.registry
        .create_identifier("88/X", vec![v(1, "note", "free")], false)
        .unwrap();
    // Prefix records are the Handle system's own: never constrained.
    f.registry
        .add_values("0.NA/88.100.1", vec![v(5, "note", "free")])
        .unwrap();

    // 88.100.2 gets its own, looser template: the parent's no longer applies.
    let own = Template::from_json(r#"{"fields": [{"type": "URL", "kind": "url"}]}"#).unwrap();
    f.registry.set_template("88.100.2", own).unwrap();
    f.registry
        .create_identifier("88.100.2/X", vec![url(1, "https://a.example")], false)
        .unwrap();
    let e = f
        .registry
        .create_identifier("88.100.2/Y", vec![url(1, "ftp://a.example")], false)
        .unwrap_err();
    assert!(
        e.to_string().contains("template of prefix 88.100.2)"),
        "{e}"
    );
    // Without it, the parent's applies again.
    f.registry.delete_template("88.100.2").unwrap();
    assert_eq!(
        f.registry.template_for("88.100.2").unwrap().unwrap().prefix,
        "88.100"
    );
}

#[test]
fn a_delegated_prefix_takes_no_template() {
    let f = Fixture::new();
    f.registry.create_prefix("88").unwrap();
    f.registry
        .delegate_prefix_to_service("88.7", "88/SERVICE", 60)
        .unwrap();
    assert!(matches!(
        f.registry.set_template("88.7", template()),
        Err(RegistryError::FailedPrecondition(_))
    ));
}
