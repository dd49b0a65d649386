//! How a gateway authenticates to NATS and protects the connection, against a real
//! `nats-server` configured for it: NKey users, and TLS with client certificates
//! (certificates made by `openssl` for the test). A wrong credential never connects.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A `nats-server` started on `conf` (its `listen` port is `port`), killed on drop.
struct Server(Child);

impl Server {
    fn start(dir: &Path, port: u16, conf: &str) -> Server {
        let file = dir.join("nats.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let server = Server(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("nats-server did not start on {port}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn nats_state(gw: &Gateway) -> String {
    let v: Value = client().get(format!("{}/readyz", gw.url())).send().await.unwrap().json().await.unwrap();
    v["nats"].as_str().unwrap_or("").to_string()
}

/// A chat request over NATS request/reply on `client`.
async fn ask(client: &async_nats::Client, prefix: &str) -> Value {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Authorization", format!("Bearer {MAIN_KEY}").as_str());
    let body = chat_body("over an authenticated connection").to_string();
    let fut = client.request_with_headers(format!("{prefix}.v1.chat"), h, body.into());
    let m = tokio::time::timeout(Duration::from_secs(10), fut).await.expect("a reply").expect("request");
    serde_json::from_slice(&m.payload).unwrap()
}

#[tokio::test]
async fn an_nkey_user_connects_and_a_wrong_seed_does_not() {
    let mock = mock_upstream();
    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let port = free_port();
    let store = dir.path().join("js").to_string_lossy().to_string();
    let conf = format!(
        "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{store}\" }}\n\
         authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    );
    let _server = Server::start(dir.path(), port, &conf);
    let url = format!("nats://127.0.0.1:{port}");
    let section = |seed: &str| nats_section(&url, "nk", &format!("nkey_seed = \"{seed}\"\njobs = false"));
    let gw = Gateway::start_with(&mock.url, &section(&seed));
    gw.wait_nats("connected").await;
    let nc = async_nats::ConnectOptions::with_nkey(seed.clone()).connect(url.as_str()).await.unwrap();
    let answer = ask(&nc, "nk").await;
    assert!(answer["choices"][0]["message"]["content"].as_str().is_some(), "{answer}");
    assert!(!gw.log().contains(&seed), "the seed is never logged");

    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let denied = Gateway::start_with(&mock.url, &section(&stranger));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(nats_state(&denied).await, "connected");
    // HTTP serves all the same
    assert_eq!(post(denied.url(), "/v1/chat/completions", chat_body("http")).await.status(), 200);
}

/// `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
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
            "/CN=switchyard test CA",
        ],
    );
    for name in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

#[tokio::test]
async fn tls_with_a_client_certificate_connects_and_without_one_does_not() {
    let mock = mock_upstream();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().to_string();
    let port = free_port();
    let conf = format!(
        "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
         tls {{ cert_file: \"{}\"\n key_file: \"{}\"\n ca_file: \"{}\"\n verify: true }}\n",
        p("js"),
        p("server.pem"),
        p("server.key"),
        p("ca.pem")
    );
    let _server = Server::start(dir.path(), port, &conf);
    let url = format!("tls://127.0.0.1:{port}");
    let tls = format!(
        "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\njobs = false",
        p("ca.pem"),
        p("client.pem"),
        p("client.key")
    );
    let gw = Gateway::start_with(&mock.url, &nats_section(&url, "tl", &tls));
    gw.wait_nats("connected").await;
    let nc = async_nats::ConnectOptions::new()
        .add_root_certificates(dir.path().join("ca.pem"))
        .add_client_certificate(dir.path().join("client.pem"), dir.path().join("client.key"))
        .require_tls(true)
        .connect(url.as_str())
        .await
        .unwrap();
    let answer = ask(&nc, "tl").await;
    assert!(answer["choices"][0]["message"]["content"].as_str().is_some(), "{answer}");

    // the server asks for a client certificate: without one, no connection
    let no_cert = format!("tls_ca_file = \"{}\"\njobs = false", p("ca.pem"));
    let denied = Gateway::start_with(&mock.url, &nats_section(&url, "tl", &no_cert));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(nats_state(&denied).await, "connected");
}
