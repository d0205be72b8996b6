//! A local stand-in for Hetzner's metadata service, built from its
//! documented formats (shared/reference/cloudinit-hetzner-oci.md, 1.1):
//! like the real one, it answers each caller about itself, chosen by the
//! caller's source address; leaves are plain text ending in a newline,
//! `private-networks` is a YAML list and `/hetzner/v1/metadata` a YAML map.
//! It can be told to answer 500 for a while, to be slow, or to serve any
//! text (documented examples verbatim, or broken documents).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Where the service lives under the stand-in's address.
pub const METADATA_PATH: &str = "/hetzner/v1/metadata";

/// The `private-networks` example in Hetzner's API reference and
/// hcloud-go's `client_test.go`, byte for byte: two networks, the first
/// with two alias IPs. Text only: no test sends anything to these.
pub const DOCUMENTED_PRIVATE_NETWORKS: &str = "\
- ip: 10.0.0.2
  alias_ips: [10.0.0.3, 10.0.0.4]
  interface_num: 1
  mac_address: 86:00:00:2a:7d:e0
  network_id: 1234
  network_name: nw-test1
  network: 10.0.0.0/8
  subnet: 10.0.0.0/24
  gateway: 10.0.0.1
- ip: 192.168.0.2
  alias_ips: []
  interface_num: 2
  mac_address: 86:00:00:2a:7d:e1
  network_id: 4321
  network_name: nw-test2
  network: 192.168.0.0/16
  subnet: 192.168.0.0/24
  gateway: 192.168.0.1
";

/// The summary document of cloud-init's Hetzner test fixture.
pub const DOCUMENTED_SUMMARY: &str = "\
hostname: cloudinit-test
instance-id: 123456
local-ipv4: ''
network-config:
  config:
  - mac_address: 96:00:00:08:19:da
    name: eth0
    subnets:
    - dns_nameservers: [185.12.64.1, 185.12.64.2]
      ipv4: true
      type: dhcp
    - address: 2a01:4f8:beef:beef::1/64
      dns_nameservers: [2a01:4ff:ff00::add:2, 2a01:4ff:ff00::add:1]
      gateway: fe80::1
      ipv6: true
    type: physical
  version: 1
public-ipv4: 192.168.0.2
public-keys:
- ssh-ed25519 AAAAC3Nz... test-key@workstation
vendor_data: \"test\"
";

/// One server as the API would describe it.
#[derive(Clone, Debug)]
pub struct ServerDoc {
    pub hostname: String,
    pub instance_id: u64,
    /// (ip, network CIDR) per private network, in interface order.
    pub private_networks: Vec<(String, String)>,
}

impl ServerDoc {
    /// Every document the service serves about this server, by path.
    pub fn documents(&self) -> BTreeMap<String, String> {
        // TEST-NET-1 (RFC 5737): a public address that is nobody's.
        let public_ipv4 = format!("192.0.2.{}", self.instance_id % 250 + 1);
        let leaves = [
            ("hostname", self.hostname.clone()),
            ("instance-id", self.instance_id.to_string()),
            ("public-ipv4", public_ipv4.clone()),
            ("region", "eu-central".to_string()),
            ("availability-zone", "fsn1-dc14".to_string()),
        ];
        let mut documents: BTreeMap<String, String> = leaves
            .iter()
            // The real service ends plain-text leaves with a newline.
            .map(|(leaf, text)| (format!("{METADATA_PATH}/{leaf}"), format!("{text}\n")))
            .collect();
        documents.insert(
            format!("{METADATA_PATH}/private-networks"),
            self.private_networks_yaml(),
        );
        documents.insert(
            METADATA_PATH.to_string(),
            format!(
                "availability-zone: fsn1-dc14\nhostname: {}\ninstance-id: {}\nlocal-ipv4: ''\npublic-ipv4: {public_ipv4}\npublic-keys: []\nregion: eu-central\nvendor_data: ''\n",
                self.hostname, self.instance_id
            ),
        );
        documents
    }

    /// In the documented layout; the gateway is the network's first host,
    /// as on Hetzner.
    pub fn private_networks_yaml(&self) -> String {
        if self.private_networks.is_empty() {
            return "[]\n".to_string();
        }
        let mut out = String::new();
        for (index, (ip, cidr)) in self.private_networks.iter().enumerate() {
            let base: Ipv4Addr = cidr.split('/').next().unwrap_or("").parse().unwrap();
            let gateway = Ipv4Addr::from(u32::from(base) + 1);
            out.push_str(&format!(
                "- ip: {ip}\n  alias_ips: []\n  interface_num: {interface}\n  mac_address: 86:00:00:2a:7d:{index:02x}\n  network_id: {id}\n  network_name: nodeimg-test-{interface}\n  network: {cidr}\n  subnet: {cidr}\n  gateway: {gateway}\n",
                interface = index + 1,
                id = 1000 + index,
            ));
        }
        out
    }
}

/// One answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub caller: IpAddr,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
struct State {
    /// Per caller address: path → body.
    documents: HashMap<IpAddr, BTreeMap<String, String>>,
    /// Answer this many requests with HTTP 500 first (a slow start).
    fail_first: usize,
    /// Hold this many requests this long before answering.
    slow_first: usize,
    slow_delay: Duration,
    served: Vec<Served>,
}

pub struct HetznerStandIn {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Every request received, answered or not yet.
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HetznerStandIn {
    /// Listens on `bind` (port chosen by the system). One thread per
    /// connection, so a slow answer does not hold up the next request.
    pub fn start(bind: IpAddr) -> HetznerStandIn {
        let listener = TcpListener::bind((bind, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_requests, thread_stop) =
            (state.clone(), requests.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let (state, requests) = (thread_state.clone(), thread_requests.clone());
                    thread::spawn(move || serve(stream, &state, &requests));
                }
            }
        });
        HetznerStandIn {
            addr,
            state,
            requests,
            stop,
        }
    }

    /// The base URL nodes are given (`--metadata hetzner:URL`).
    pub fn url(&self) -> String {
        format!("http://{}{METADATA_PATH}", self.addr)
    }

    /// Serves `doc`'s documents to requests from `caller`.
    pub fn add_server(&self, caller: IpAddr, doc: ServerDoc) {
        self.state
            .lock()
            .unwrap()
            .documents
            .insert(caller, doc.documents());
    }

    /// Serves `body` verbatim at `path` (e.g. `/hetzner/v1/metadata/hostname`)
    /// to `caller`, known or not.
    pub fn set_document(&self, caller: IpAddr, path: &str, body: &str) {
        self.state
            .lock()
            .unwrap()
            .documents
            .entry(caller)
            .or_default()
            .insert(path.to_string(), body.to_string());
    }

    /// `path` answers 404 to `caller` from now on.
    pub fn remove_document(&self, caller: IpAddr, path: &str) {
        if let Some(documents) = self.state.lock().unwrap().documents.get_mut(&caller) {
            documents.remove(path);
        }
    }

    /// The next `count` requests get HTTP 500.
    pub fn fail_first(&self, count: usize) {
        self.state.lock().unwrap().fail_first = count;
    }

    /// The next `count` requests are answered only after `delay`.
    pub fn slow_first(&self, count: usize, delay: Duration) {
        let mut state = self.state.lock().unwrap();
        state.slow_first = count;
        state.slow_delay = delay;
    }

    /// Every answer given so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().unwrap().served.clone()
    }
}

impl Drop for HetznerStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, requests: &AtomicUsize) {
    let Ok(caller) = stream.peer_addr().map(|addr| addr.ip()) else {
        return;
    };
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // The drop's wake-up call, or a client that gave up.
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let delay = {
        let mut state = state.lock().unwrap();
        if state.slow_first > 0 {
            state.slow_first -= 1;
            Some(state.slow_delay)
        } else {
            None
        }
    };
    if let Some(delay) = delay {
        thread::sleep(delay);
    }
    let (status, body) = {
        let mut state = state.lock().unwrap();
        let answer = if state.fail_first > 0 {
            state.fail_first -= 1;
            (500, "Internal Server Error\n".to_string())
        } else {
            match state
                .documents
                .get(&caller)
                .and_then(|documents| documents.get(path.trim_end_matches('/')))
            {
                Some(body) => (200, body.clone()),
                None => (404, "Not Found\n".to_string()),
            }
        };
        state.served.push(Served {
            caller,
            path,
            status: answer.0,
        });
        answer
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}
