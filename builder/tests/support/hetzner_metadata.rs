//! A local stand-in for Hetzner's metadata service, built from its
//! documented formats: like the real one, it answers each caller about
//! itself (chosen by the caller's source address), plain text for leaves
//! and YAML for `private-networks` and the summary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct ServerDoc {
    pub hostname: String,
    pub instance_id: u64,
    /// (ip, network CIDR) per private network.
    pub private_networks: Vec<(String, String)>,
}

impl ServerDoc {
    fn private_networks_yaml(&self) -> String {
        let mut out = String::new();
        for (i, (ip, network)) in self.private_networks.iter().enumerate() {
            let gateway = network.split('/').next().unwrap_or("").to_string();
            out.push_str(&format!(
                "- ip: {ip}\n  alias_ips: []\n  interface_num: {n}\n  mac_address: 86:00:00:2a:7d:{m:02x}\n  network_id: {id}\n  network_name: nodeimg-test\n  network: {network}\n  subnet: {network}\n  gateway: {gateway}\n",
                n = i + 1,
                m = i,
                id = 1000 + i
            ));
        }
        out
    }
}

#[derive(Default)]
struct State {
    servers: HashMap<IpAddr, ServerDoc>,
    /// Answer this many requests with HTTP 500 first (a slow start).
    fail_first: usize,
}

pub struct HetznerStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    pub requests: Arc<AtomicUsize>,
}

impl HetznerStandIn {
    /// Listens on `bind` (port chosen by the system).
    pub fn start(bind: IpAddr) -> HetznerStandIn {
        let listener = TcpListener::bind((bind, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (thread_state, thread_requests) = (state.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = thread_state.clone();
                let requests = thread_requests.clone();
                std::thread::spawn(move || serve(stream, &state, &requests));
            }
        });
        HetznerStandIn {
            addr,
            state,
            requests,
        }
    }

    /// The base URL nodes are given (`--metadata hetzner:URL`).
    pub fn url(&self) -> String {
        format!("http://{}/hetzner/v1/metadata", self.addr)
    }

    pub fn add_server(&self, caller: IpAddr, doc: ServerDoc) {
        self.state.lock().unwrap().servers.insert(caller, doc);
    }

    pub fn fail_first(&self, count: usize) {
        self.state.lock().unwrap().fail_first = count;
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, requests: &AtomicUsize) {
    let caller = stream.peer_addr().map(|a| a.ip());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (status, body) = {
        let mut state = state.lock().unwrap();
        if state.fail_first > 0 {
            state.fail_first -= 1;
            (500, "Internal Server Error\n".to_string())
        } else {
            match caller.ok().and_then(|ip| state.servers.get(&ip)) {
                None => (404, "Not Found\n".to_string()),
                Some(doc) => answer(&path, doc),
            }
        }
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
}

fn answer(path: &str, doc: &ServerDoc) -> (u16, String) {
    let Some(rest) = path.strip_prefix("/hetzner/v1/metadata") else {
        return (404, "Not Found\n".into());
    };
    let first_ip = doc
        .private_networks
        .first()
        .map(|(ip, _)| ip.clone())
        .unwrap_or_default();
    match rest {
        "" | "/" => (
            200,
            format!(
                "hostname: {}\ninstance-id: {}\npublic-ipv4: 192.0.2.{}\nregion: eu-central\navailability-zone: fsn1-dc14\nlocal-ipv4: {first_ip}\n",
                doc.hostname,
                doc.instance_id,
                doc.instance_id % 250
            ),
        ),
        // The real service ends leaves with a newline.
        "/hostname" => (200, format!("{}\n", doc.hostname)),
        "/instance-id" => (200, format!("{}\n", doc.instance_id)),
        "/public-ipv4" => (200, format!("192.0.2.{}\n", doc.instance_id % 250)),
        "/region" => (200, "eu-central\n".into()),
        "/availability-zone" => (200, "fsn1-dc14\n".into()),
        "/private-networks" => (200, doc.private_networks_yaml()),
        _ => (404, "Not Found\n".into()),
    }
}
