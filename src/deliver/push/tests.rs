use super::*;

#[test]
fn tags_to_push_must_name_their_registry() {
    let targets = check_tags(&[
        "127.0.0.1:5000/team/app:1".to_string(),
        "reg.example.com/app".to_string(),
        "localhost/app:2".to_string(),
    ])
    .expect("all name a registry");
    assert_eq!(targets[0].registry, "127.0.0.1:5000");
    assert_eq!(targets[0].repository, "team/app");
    assert_eq!(targets[0].tag_name, "1");
    assert_eq!(targets[1].tag_name, "latest");
    assert_eq!(targets[2].registry, "localhost");
    for tag in ["app:1", "team/app:1"] {
        let e = check_tags(&[tag.to_string()]).expect_err(tag).to_string();
        assert!(
            e.contains(tag) && e.contains("names no registry") && e.contains("help:"),
            "{e}"
        );
    }
    let e = check_tags(&["Reg.example.com/UPPER:1".to_string()]).expect_err("bad");
    assert!(e.to_string().contains("not an image reference"), "{e}");
}

#[test]
fn skipped_bytes_are_present_and_mounted_together() {
    let pushed = Pushed {
        tag: "r.example/a:1".into(),
        registry: "r.example".into(),
        repository: "a".into(),
        digest: "sha256:00".into(),
        uploaded_bytes: 1,
        present_bytes: 2,
        mounted_bytes: 3,
    };
    assert_eq!(pushed.skipped_bytes(), 5);
}
