//! Token (Bearer) auth against a real registry: Debian's docker-registry (distribution 2.8)
//! with `auth.token`, and a token service of the test's own on a free 127.0.0.1 port. The
//! service checks the Basic credentials and the scope asked for, and issues a JWT signed
//! (RS256, with `openssl dgst`) by a key whose certificate rides in the token's `x5c` header
//! and chains to a CA made here with openssl, which the registry trusts (`rootcertbundle`), as
//! distribution's `registry/auth/token` verifies it. Pushes, a pull of a base, wrong
//! credentials and a token without push access; skopeo reads back what was pushed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dockception::deliver::push::{self, RegistrySettings};
use dockception::deliver::testkit;
use dockception::Progress;

use crate::support::{
    base64, block_on, noise, run_ok, text, tools, Registry, RegistryOptions, TokenAuth,
};

const SERVICE: &str = "dockception-test-registry";
const ISSUER: &str = "dockception-test-token-service";
const USER: &str = "tokenuser";
const PASSWORD: &str = "t0ken-pw";

/// `bytes` in base64url without padding, as JWTs write their parts.
fn base64url(bytes: &[u8]) -> String {
    base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// `text` with its `%XX` escapes (and `+` for a space) decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a token request asked for and what it was given, for the tests to check.
#[derive(Debug, Clone)]
struct Issued {
    /// `repository:NAME:ACTIONS` as asked.
    asked: Vec<String>,
    /// `repository:NAME:ACTIONS` as granted.
    granted: Vec<String>,
}

/// A token service on a free 127.0.0.1 port; stopped on drop.
struct TokenService {
    realm: String,
    /// The CA the signing certificate chains to (the registry's `rootcertbundle`).
    ca: PathBuf,
    issued: Arc<Mutex<Vec<Issued>>>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    address: String,
    serving: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// What the service signs with and whom it lets do what.
struct Signer {
    key: PathBuf,
    /// The signing certificate, DER in base64: the JWT's `x5c`.
    x5c: String,
    /// `Authorization` header values that are the right credentials.
    accepted: String,
    /// Repositories on which push is never granted.
    read_only: Vec<String>,
    dir: PathBuf,
    serial: AtomicU64,
}

impl TokenService {
    /// Start the service: a CA, a signing key and its certificate made with openssl; push is
    /// granted on every repository but those of `read_only`.
    fn start(read_only: &[&str]) -> TokenService {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        run_ok(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=dockception-token-ca",
            ],
            d,
        );
        run_ok(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "signer.key",
                "-out",
                "signer.csr",
                "-subj",
                "/CN=dockception-token-signer",
            ],
            d,
        );
        run_ok(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "signer.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "signer.pem",
                "-days",
                "2",
            ],
            d,
        );
        run_ok(
            "openssl",
            &[
                "x509",
                "-in",
                "signer.pem",
                "-outform",
                "DER",
                "-out",
                "signer.der",
            ],
            d,
        );
        let der = std::fs::read(d.join("signer.der")).expect("signer.der");
        let signer = Arc::new(Signer {
            key: d.join("signer.key"),
            x5c: base64(&der),
            accepted: format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes())),
            read_only: read_only.iter().map(|s| s.to_string()).collect(),
            dir: d.to_path_buf(),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address").to_string();
        let issued = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let serving = {
            let (issued, refused, stop) = (issued.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let (signer, issued, refused) =
                                (signer.clone(), issued.clone(), refused.clone());
                            std::thread::spawn(move || {
                                serve(stream, &signer, &issued, &refused);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // Nothing to accept: look again shortly (and at `stop`).
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        TokenService {
            realm: format!("http://{address}/token"),
            ca: d.join("ca.pem"),
            issued,
            refused,
            stop,
            address,
            serving: Some(serving),
            _dir: dir,
        }
    }

    /// A registry that sends its clients to this service.
    fn registry(&self) -> Registry {
        Registry::start(RegistryOptions {
            token: Some(TokenAuth {
                realm: self.realm.clone(),
                service: SERVICE.into(),
                issuer: ISSUER.into(),
                bundle: self.ca.clone(),
            }),
            ..RegistryOptions::default()
        })
    }

    fn issued(&self) -> Vec<Issued> {
        self.issued.lock().map(|i| i.clone()).unwrap_or_default()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop, then wait for it.
        let _ = TcpStream::connect(&self.address);
        if let Some(serving) = self.serving.take() {
            let _ = serving.join();
        }
    }
}

/// Answer one HTTP request: a token for the right credentials, else 401.
fn serve(stream: TcpStream, signer: &Signer, issued: &Mutex<Vec<Issued>>, refused: &AtomicU64) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "scope" => scopes.push(percent_decoded(value)),
            "service" => service = percent_decoded(value),
            _ => {}
        }
    }
    let mut stream = stream;
    if authorization.as_deref() != Some(signer.accepted.as_str()) || service != SERVICE {
        refused.fetch_add(1, Ordering::Relaxed);
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"the token service does not know this user and password"}]}"#;
        let _ = write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let mut access = Vec::new();
    let mut granted = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|a| {
                *a == "pull" || (*a == "push" && !signer.read_only.iter().any(|r| r == name))
            })
            .collect();
        granted.push(format!("repository:{name}:{}", allowed.join(",")));
        access.push(serde_json::json!({"type": "repository", "name": name, "actions": allowed}));
    }
    let token = sign(signer, &access);
    if let Ok(mut log) = issued.lock() {
        log.push(Issued {
            asked: scopes.clone(),
            granted,
        });
    }
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A JWT granting `access`, signed RS256 by the signer's key.
fn sign(signer: &Signer, access: &[serde_json::Value]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let serial = signer.serial.fetch_add(1, Ordering::Relaxed);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [signer.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": USER,
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("token-{serial}"),
        "access": access,
    });
    let signed = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let input = signer.dir.join(format!("input-{serial}"));
    std::fs::write(&input, &signed).expect("write the signing input");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&signer.key)
        .arg(&input)
        .output()
        .expect("openssl runs");
    let _ = std::fs::remove_file(&input);
    assert!(out.status.success(), "openssl dgst: {}", text(&out.stderr));
    format!("{signed}.{}", base64url(&out.stdout))
}

/// Settings whose docker config holds `user:password` for `registry`.
fn logged_in(dir: &Path, registry: &str, user: &str, password: &str) -> RegistrySettings {
    let config = dir.join(format!("docker-{user}"));
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths":{{"{registry}":{{"auth":"{}"}}}}}}"#,
            base64(format!("{user}:{password}").as_bytes())
        ),
    )
    .expect("config");
    RegistrySettings {
        docker_config: Some(config),
        ..RegistrySettings::default()
    }
}

fn sample(store: &Path, seed: u64) -> testkit::WrittenImage {
    testkit::image(
        store,
        &[
            vec![("bin/app", noise(200_000, seed))],
            vec![("etc/app.conf", format!("seed={seed}\n").into_bytes())],
        ],
    )
    .expect("image")
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn a_push_through_token_auth_reads_back_with_skopeo_and_a_base_pulls_through_it() {
    if !tools(&["docker-registry", "openssl", "skopeo"]) {
        return;
    }
    let tokens = TokenService::start(&[]);
    let registry = tokens.registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = logged_in(dir.path(), &registry.address, USER, PASSWORD);
    let image = sample(&dir.path().join("store"), 21);
    let tag = format!("{}/team/app:1", registry.address);
    assert_eq!(
        registry.status("GET", "/v2/team/app/manifests/1", None),
        401,
        "the registry wants a token"
    );
    let pushed = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &settings,
        &Progress::Silent,
    ))
    .expect("pushed through token auth");
    assert_eq!(pushed[0].digest, image.digest());
    assert!(pushed[0].uploaded_bytes > 200_000, "{pushed:?}");
    let issued = tokens.issued();
    assert!(
        issued.iter().any(|i| i
            .asked
            .contains(&"repository:team/app:pull,push".to_string())
            && i.granted
                .contains(&"repository:team/app:pull,push".to_string())),
        "a token for push was asked for and given: {issued:?}"
    );

    let creds = format!("--creds={USER}:{PASSWORD}");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &creds])
        .arg(format!("docker://{tag}"))
        .output()
        .expect("skopeo runs");
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    assert_eq!(sha256_of(&out.stdout), image.digest(), "our manifest bytes");
    let out = Command::new("skopeo")
        .args(["inspect", "--config", "--raw", "--tls-verify=false", &creds])
        .arg(format!("docker://{tag}"))
        .output()
        .expect("skopeo runs");
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    assert_eq!(sha256_of(&out.stdout), image.image_id());

    // The pushed image as a base, pulled through token auth into a fresh store.
    let store = testkit::store(&dir.path().join("pulled"));
    let base = block_on(push::pull_base(&tag, &store, &settings)).expect("pulled");
    assert_eq!(base.image_id, image.image_id());
    let diff_ids: Vec<&str> = base.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let expected: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(diff_ids, expected);
    assert!(
        tokens
            .issued()
            .iter()
            .any(|i| i.asked == ["repository:team/app:pull".to_string()]),
        "the pull asked for a pull token: {:?}",
        tokens.issued()
    );
    // Found again by what the tag names: no layer is downloaded.
    let again = block_on(push::base_from_registry(&tag, &store, &settings, || {
        panic!("the store has this base; nothing is pulled")
    }))
    .expect("from the store");
    assert_eq!(again.image, base);
    assert!(!again.pulled);
}

#[test]
fn wrong_credentials_name_the_registry_and_repository_and_push_nothing() {
    if !tools(&["docker-registry", "openssl"]) {
        return;
    }
    let tokens = TokenService::start(&[]);
    let registry = tokens.registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = sample(&dir.path().join("store"), 22);
    let tag = format!("{}/team/wrong:1", registry.address);
    let wrong = logged_in(dir.path(), &registry.address, USER, "not-the-password");
    let e = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &wrong,
        &Progress::Silent,
    ))
    .expect_err("refused");
    let message = e.to_string();
    eprintln!("the error as shown:\n{message}");
    assert!(
        message.contains(&format!("pushing to team/wrong on {}", registry.address))
            && message.contains("token service refused the credentials")
            && message.contains(&format!("docker login {}", registry.address))
            && message.contains("nothing was tagged"),
        "{message}"
    );
    assert!(
        tokens.refused.load(Ordering::Relaxed) > 0,
        "the service was asked"
    );
    assert!(
        tokens.issued().is_empty(),
        "no token was given: {:?}",
        tokens.issued()
    );
    // No credentials at all: the same, never a silent anonymous push.
    let anonymous = RegistrySettings {
        docker_config: Some(dir.path().join("none")),
        ..RegistrySettings::default()
    };
    let e =
        block_on(push::push(&image, &[tag], &anonymous, &Progress::Silent)).expect_err("refused");
    assert!(e.to_string().contains("team/wrong"), "{e}");
    // The pull of a base with wrong credentials: the same kind of error, naming it.
    let store = testkit::store(&dir.path().join("pulled"));
    let e = block_on(push::pull_base(
        &format!("{}/team/wrong:1", registry.address),
        &store,
        &wrong,
    ))
    .expect_err("refused");
    assert!(
        e.to_string()
            .contains(&format!("pulling team/wrong on {}", registry.address)),
        "{e}"
    );
}

#[test]
fn a_token_without_push_access_is_a_clear_refusal_and_leaves_no_tag() {
    if !tools(&["docker-registry", "openssl", "skopeo"]) {
        return;
    }
    let tokens = TokenService::start(&["readonly/app"]);
    let registry = tokens.registry();
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = logged_in(dir.path(), &registry.address, USER, PASSWORD);
    let image = sample(&dir.path().join("store"), 23);
    let tag = format!("{}/readonly/app:1", registry.address);
    let e = block_on(push::push(
        &image,
        std::slice::from_ref(&tag),
        &settings,
        &Progress::Silent,
    ))
    .expect_err("no push access");
    let message = e.to_string();
    eprintln!("the error as shown:\n{message}");
    assert!(
        message.contains(&format!("pushing to readonly/app on {}", registry.address))
            && message.contains(&format!(
                "the credentials for {} may not push to readonly/app",
                registry.address
            ))
            && message.contains("token")
            && message.contains("ask for access")
            && !message.contains("docker login"),
        "a 403-style answer, not a request to log in: {message}"
    );
    assert!(
        tokens.issued().iter().any(|i| i
            .granted
            .contains(&"repository:readonly/app:pull".to_string())),
        "the service gave a token without push: {:?}",
        tokens.issued()
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("--creds={USER}:{PASSWORD}"))
        .arg(format!("docker://{tag}"))
        .output()
        .expect("skopeo runs");
    assert!(!out.status.success(), "no tag was written");
    // The same credentials push elsewhere.
    let other = format!("{}/team/allowed:1", registry.address);
    block_on(push::push(&image, &[other], &settings, &Progress::Silent)).expect("pushed");
}

#[test]
fn the_token_service_reads_scopes_and_writes_base64url() {
    assert_eq!(
        percent_decoded("repository%3Ateam%2Fapp%3Apull%2Cpush"),
        "repository:team/app:pull,push"
    );
    assert_eq!(percent_decoded("a+b%2"), "a b%2");
    assert_eq!(base64url(b"\xfb\xff"), "-_8");
}
