//! The image config we write: the base's config first, then the manifest's runtime keys with a
//! Dockerfile's meaning (ENV replaces a name, ENTRYPOINT resets an inherited CMD, ...), one
//! history entry per layer we add, and every time from `SOURCE_DATE_EPOCH` or the epoch.
//! Nothing in it names the machine, the folder, the user or the time of the build. The bytes
//! are serde_json's with sorted keys (its map is a BTreeMap here), so the same inputs give the
//! same bytes, hence the same image id.

use serde_json::{json, Map, Value};

use crate::plan::RuntimePlan;

use super::{Error, Result};

/// What the image runs on, when there is no base to take it from (scratch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `linux`.
    pub os: String,
}

/// One layer we add, for the config's `rootfs` and `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedLayer {
    /// Its diff id.
    pub diff_id: String,
    /// What made it, for `history[].created_by`.
    pub created_by: String,
}

/// Everything the config is made of.
#[derive(Debug, Clone)]
pub struct ConfigInput<'a> {
    /// The base's config JSON; `None` for scratch.
    pub base: Option<&'a [u8]>,
    /// The base's name, for errors.
    pub base_name: &'a str,
    /// Used when there is no base.
    pub platform: Platform,
    /// The manifest's runtime keys (with the init already wrapped in).
    pub runtime: &'a RuntimePlan,
    /// Labels dockception adds (after the manifest's).
    pub labels: &'a [(String, String)],
    /// The layers we add, bottom first.
    pub layers: &'a [AddedLayer],
    /// Seconds since the epoch for `created` and our history entries.
    pub epoch: u64,
}

/// Keys of a base's config that describe how the base was built, not the image: dropped.
const BUILD_ONLY_KEYS: &[&str] = &[
    "container",
    "container_config",
    "docker_version",
    "author",
    "id",
    "parent",
];

/// The config's bytes.
pub fn write(input: &ConfigInput<'_>) -> Result<Vec<u8>> {
    let mut image = match input.base {
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(base_error(input, "it is not a JSON object".into())),
            Err(e) => return Err(base_error(input, e.to_string())),
        },
        None => Map::from_iter([
            (
                "architecture".to_string(),
                json!(input.platform.architecture),
            ),
            ("os".to_string(), json!(input.platform.os)),
        ]),
    };
    for key in BUILD_ONLY_KEYS {
        image.remove(*key);
    }
    let created = rfc3339(input.epoch);
    image.insert("created".into(), json!(created));

    let config = image
        .entry("config")
        .or_insert_with(|| Value::Object(Map::new()));
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    if let Value::Object(config) = config {
        apply_runtime(config, input.runtime, input.labels);
    }

    let rootfs = image
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let mut diff_ids = match rootfs.get("diff_ids") {
        Some(Value::Array(ids)) => ids.clone(),
        _ => Vec::new(),
    };
    diff_ids.extend(input.layers.iter().map(|l| json!(l.diff_id)));
    *rootfs = json!({"type": "layers", "diff_ids": diff_ids});

    let mut history = match image.get("history") {
        Some(Value::Array(steps)) => steps.clone(),
        _ => Vec::new(),
    };
    history.extend(input.layers.iter().map(
        |l| json!({"created": created, "created_by": l.created_by, "comment": "dockception"}),
    ));
    image.insert("history".into(), Value::Array(history));

    serde_json::to_vec(&Value::Object(image)).map_err(|e| base_error(input, e.to_string()))
}

fn base_error(input: &ConfigInput<'_>, message: String) -> Error {
    Error::BaseConfig {
        image: input.base_name.to_string(),
        message,
    }
}

/// The runtime keys, as the Dockerfile instructions of the same names would set them.
fn apply_runtime(
    config: &mut Map<String, Value>,
    runtime: &RuntimePlan,
    labels: &[(String, String)],
) {
    if !runtime.env.is_empty() {
        let mut env: Vec<String> = match config.get("Env") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        for (key, value) in &runtime.env {
            let entry = format!("{key}={value}");
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str()))
            {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        config.insert("Env".into(), json!(env));
    }
    if let Some(workdir) = &runtime.workdir {
        config.insert("WorkingDir".into(), json!(workdir));
    }
    if let Some(user) = &runtime.user {
        config.insert("User".into(), json!(user));
    }
    if !runtime.expose.is_empty() {
        let ports = config
            .entry("ExposedPorts")
            .or_insert_with(|| Value::Object(Map::new()));
        if !ports.is_object() {
            *ports = Value::Object(Map::new());
        }
        if let Value::Object(ports) = ports {
            for port in &runtime.expose {
                let key = if port.contains('/') {
                    port.clone()
                } else {
                    format!("{port}/tcp")
                };
                ports.insert(key, json!({}));
            }
        }
    }
    let all_labels = runtime.labels.iter().chain(labels.iter());
    for (key, value) in all_labels {
        let map = config
            .entry("Labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        if let Value::Object(map) = map {
            map.insert(key.clone(), json!(value));
        }
    }
    if let Some(entrypoint) = &runtime.entrypoint {
        config.insert("Entrypoint".into(), json!(entrypoint));
        if runtime.cmd.is_none() {
            // As in a Dockerfile: a new ENTRYPOINT drops the CMD the base gave.
            config.insert("Cmd".into(), Value::Null);
        }
    }
    if let Some(cmd) = &runtime.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
}

/// `seconds` since the epoch as RFC 3339 in UTC, e.g. `1970-01-01T00:00:00Z`.
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        base: Option<&'a [u8]>,
        runtime: &'a RuntimePlan,
        layers: &'a [AddedLayer],
    ) -> ConfigInput<'a> {
        ConfigInput {
            base,
            base_name: "base:1",
            platform: Platform {
                architecture: "amd64".into(),
                os: "linux".into(),
            },
            runtime,
            labels: &[],
            layers,
            epoch: 0,
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_base_comes_first_then_the_runtime_keys_as_a_dockerfile_sets_them() {
        let base =
            br#"{"architecture":"arm64","os":"linux","docker_version":"20.10","container":"abc",
            "config":{"Env":["PATH=/bin","A=1"],"Cmd":["sh"],"Volumes":{"/data":{}}},
            "rootfs":{"type":"layers","diff_ids":["sha256:b"]},
            "history":[{"created":"2020-01-01T00:00:00Z","created_by":"ADD rootfs"}]}"#;
        let runtime = RuntimePlan {
            env: vec![("A".into(), "2".into()), ("B".into(), "x".into())],
            entrypoint: Some(vec!["/app".into()]),
            expose: vec!["8080".into(), "53/udp".into()],
            labels: vec![("org".into(), "me".into())],
            ..RuntimePlan::on("base:1")
        };
        let layers = [AddedLayer {
            diff_id: "sha256:ours".into(),
            created_by: "dockception: artifacts".into(),
        }];
        let bytes = write(&input(Some(base), &runtime, &layers)).expect("config");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["architecture"], "arm64");
        assert_eq!(v["created"], "1970-01-01T00:00:00Z");
        assert!(v.get("docker_version").is_none() && v.get("container").is_none());
        assert_eq!(v["config"]["Env"], json!(["PATH=/bin", "A=2", "B=x"]));
        assert_eq!(v["config"]["Entrypoint"], json!(["/app"]));
        assert_eq!(
            v["config"]["Cmd"],
            Value::Null,
            "a new entrypoint drops the base's cmd"
        );
        assert_eq!(
            v["config"]["Volumes"],
            json!({"/data": {}}),
            "the base's other keys stay"
        );
        assert_eq!(
            v["config"]["ExposedPorts"],
            json!({"8080/tcp": {}, "53/udp": {}})
        );
        assert_eq!(v["config"]["Labels"], json!({"org": "me"}));
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:b", "sha256:ours"]));
        assert_eq!(
            v["history"][0]["created"], "2020-01-01T00:00:00Z",
            "the base's history as it was"
        );
        assert_eq!(v["history"][1]["created_by"], "dockception: artifacts");
        assert_eq!(v["history"][1]["created"], "1970-01-01T00:00:00Z");
        assert_eq!(
            bytes,
            write(&input(Some(base), &runtime, &layers)).expect("again")
        );
    }

    #[test]
    fn scratch_takes_the_platform_and_only_the_epoch_changes_created() {
        let runtime = RuntimePlan {
            cmd: Some(vec!["/app".into()]),
            ..RuntimePlan::on("scratch")
        };
        let at = |epoch| {
            let mut i = input(None, &runtime, &[]);
            i.epoch = epoch;
            serde_json::from_slice::<Value>(&write(&i).expect("config")).expect("json")
        };
        let (mut a, mut b) = (at(0), at(1_700_000_000));
        assert_eq!(a["architecture"], "amd64");
        assert_eq!(a["config"]["Cmd"], json!(["/app"]));
        assert_eq!(b["created"], "2023-11-14T22:13:20Z");
        a.as_object_mut().expect("object").remove("created");
        b.as_object_mut().expect("object").remove("created");
        assert_eq!(a, b);
    }

    #[test]
    fn a_base_config_that_is_not_json_names_the_base() {
        let runtime = RuntimePlan::on("base:1");
        let e = write(&input(Some(b"[1]"), &runtime, &[])).expect_err("fails");
        assert!(e.to_string().contains("base:1"), "{e}");
    }
}
