//! packaging/kubernetes/: the manifests read as the API server would store
//! them, and checked against what canaryd needs: the privileges of its
//! systemd unit and no more, every path it uses backed by a volume at the
//! same path on the node, a command line canaryd's own flag parser accepts
//! and a config file canaryd's own parser accepts. No cluster: what a
//! cluster's admission would add (defaults, policies) is not checked here.

use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use canary_userspace::{cli::canaryd::Args, config};
use clap::Parser;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/kubernetes")
}

/// One manifest file: a single YAML document, as JSON values.
struct Manifest {
    file: String,
    doc: Value,
}

impl Manifest {
    fn load(name: &str) -> Manifest {
        let file = format!("packaging/kubernetes/{name}");
        let text = fs::read_to_string(dir().join(name)).unwrap();
        let doc = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        Manifest { file, doc }
    }

    fn daemonset() -> Manifest {
        Manifest::load("canaryd-daemonset.yaml")
    }

    /// The value at a JSON pointer (`/spec/template/spec/hostNetwork`; a
    /// `/` in a key is written `~1`); a missing one fails naming both.
    #[track_caller]
    fn at(&self, pointer: &str) -> &Value {
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: {pointer} is missing", self.file))
    }

    #[track_caller]
    fn str(&self, pointer: &str) -> &str {
        self.at(pointer)
            .as_str()
            .unwrap_or_else(|| panic!("{}: {pointer} is not a string", self.file))
    }

    #[track_caller]
    fn array(&self, pointer: &str) -> &[Value] {
        self.at(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("{}: {pointer} is not a list", self.file))
    }

    /// Fails with the file, the pointer, and what was there.
    #[track_caller]
    fn expect(&self, pointer: &str, want: Value) {
        let found = self.doc.pointer(pointer);
        assert_eq!(
            found,
            Some(&want),
            "{}: {pointer} should be {want}",
            self.file
        );
    }

    /// The element of the list at `pointer` whose `key` is `value`.
    #[track_caller]
    fn find(&self, pointer: &str, key: &str, value: &str) -> &Value {
        self.array(pointer)
            .iter()
            .find(|item| item[key] == value)
            .unwrap_or_else(|| panic!("{}: {pointer} has no {key} = {value:?}", self.file))
    }
}

/// The one container's pointer; there must be exactly one.
#[track_caller]
fn container(ds: &Manifest) -> &'static str {
    let containers = ds.array("/spec/template/spec/containers");
    assert_eq!(containers.len(), 1, "{}: one container, canaryd", ds.file);
    "/spec/template/spec/containers/0"
}

/// The ConfigMap's one file: its name (the key) and its text.
#[track_caller]
fn config_file() -> (String, String) {
    let cm = Manifest::load("configmap.yaml");
    let data = cm.at("/data").as_object().unwrap();
    assert_eq!(data.len(), 1, "{}: /data holds canary.toml only", cm.file);
    let (key, text) = data.iter().next().unwrap();
    assert_eq!(key, "canary.toml", "{}: /data", cm.file);
    (key.clone(), text.as_str().unwrap().to_owned())
}

#[test]
fn each_manifest_is_the_kind_and_version_the_api_expects() {
    let ns = Manifest::load("namespace.yaml");
    ns.expect("/apiVersion", json!("v1"));
    ns.expect("/kind", json!("Namespace"));
    // Pod Security's baseline refuses hostNetwork, hostPath and these
    // capabilities: without this label the pods are never created.
    ns.expect(
        "/metadata/labels/pod-security.kubernetes.io~1enforce",
        json!("privileged"),
    );
    let namespace = ns.str("/metadata/name");
    for (name, api_version, kind) in [
        ("configmap.yaml", "v1", "ConfigMap"),
        ("canaryd-daemonset.yaml", "apps/v1", "DaemonSet"),
    ] {
        let m = Manifest::load(name);
        m.expect("/apiVersion", json!(api_version));
        m.expect("/kind", json!(kind));
        m.expect("/metadata/namespace", json!(namespace));
    }
    // `kubectl apply -k` applies what the kustomization lists: every
    // manifest here, and nothing that is not.
    let k = Manifest::load("kustomization.yaml");
    k.expect("/kind", json!("Kustomization"));
    let listed: BTreeSet<&str> = k
        .array("/resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let files: BTreeSet<String> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    let files: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(listed, files, "{}: /resources", k.file);
}

#[test]
fn the_daemonset_selects_its_own_pods() {
    let ds = Manifest::daemonset();
    let selector = ds.at("/spec/selector/matchLabels").as_object().unwrap();
    assert!(!selector.is_empty(), "{}: empty selector", ds.file);
    for (key, value) in selector {
        let pointer = format!("/spec/template/metadata/labels/{}", key.replace('/', "~1"));
        ds.expect(&pointer, value.clone());
    }
}

#[test]
fn the_daemonset_runs_on_every_node_in_the_nodes_network() {
    let ds = Manifest::daemonset();
    let pod = "/spec/template/spec";
    ds.expect(&format!("{pod}/hostNetwork"), json!(true));
    ds.expect(
        &format!("{pod}/dnsPolicy"),
        json!("ClusterFirstWithHostNet"),
    );
    ds.expect(&format!("{pod}/automountServiceAccountToken"), json!(false));
    for shared in ["hostPID", "hostIPC"] {
        let found = ds.doc.pointer(&format!("{pod}/{shared}"));
        assert!(
            found.is_none_or(|v| v == &json!(false)),
            "{}: {shared} is not needed",
            ds.file
        );
    }
    // A toleration with no key and operator Exists tolerates every taint.
    let everything = ds
        .array(&format!("{pod}/tolerations"))
        .iter()
        .any(|t| t == &json!({"operator": "Exists"}));
    assert!(everything, "{}: no toleration of every taint", ds.file);
    assert!(
        ds.at(&format!("{pod}/terminationGracePeriodSeconds"))
            .is_u64(),
        "{}: terminationGracePeriodSeconds",
        ds.file
    );
    ds.expect(
        "/spec/updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    let c = container(&ds);
    for resource in ["cpu", "memory"] {
        ds.str(&format!("{c}/resources/requests/{resource}"));
    }
    ds.expect(&format!("{c}/image"), json!("canary:0.1.0"));
}

/// The capabilities of packaging/canaryd.service's bounding set, without
/// the `CAP_` Kubernetes leaves off.
fn unit_capabilities() -> Vec<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/canaryd.service");
    let text = fs::read_to_string(unit).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("packaging/canaryd.service has a CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|cap| cap.strip_prefix("CAP_").unwrap().to_owned())
        .collect()
}

#[test]
fn the_container_has_the_units_capabilities_and_is_not_privileged() {
    let ds = Manifest::daemonset();
    let sc = format!("{}/securityContext", container(&ds));
    // canaryd starts with these and keeps BPF and NET_ADMIN
    // (canary-userspace/src/host/caps.rs): as under systemd.
    ds.expect(
        &format!("{sc}/capabilities/add"),
        json!(["BPF", "NET_ADMIN", "PERFMON", "SETPCAP"]),
    );
    ds.expect(
        &format!("{sc}/capabilities/add"),
        json!(unit_capabilities()),
    );
    ds.expect(&format!("{sc}/capabilities/drop"), json!(["ALL"]));
    ds.expect(&format!("{sc}/privileged"), json!(false));
    ds.expect(&format!("{sc}/allowPrivilegeEscalation"), json!(false));
    ds.expect(&format!("{sc}/readOnlyRootFilesystem"), json!(true));
    // The capabilities are root's: Kubernetes sets no ambient ones.
    ds.expect(&format!("{sc}/runAsUser"), json!(0));
}

/// The container's mount at `path` and the volume it names.
#[track_caller]
fn mounted_volume<'m>(ds: &'m Manifest, path: &str) -> (&'m Value, &'m Value) {
    let mount = ds.find(
        &format!("{}/volumeMounts", container(ds)),
        "mountPath",
        path,
    );
    let name = mount["name"].as_str().unwrap();
    let volume = ds.find("/spec/template/spec/volumes", "name", name);
    (mount, volume)
}

#[test]
fn each_mount_is_backed_by_its_volume() {
    let ds = Manifest::daemonset();
    // The node's paths, at the same paths in the pod: what the config names
    // is where canaryctl on the node looks.
    for (path, kind) in [
        ("/sys/fs/bpf", "Directory"),
        ("/var/lib/canary", "DirectoryOrCreate"),
        ("/run/canary", "DirectoryOrCreate"),
    ] {
        let (mount, volume) = mounted_volume(&ds, path);
        assert_eq!(
            volume["hostPath"],
            json!({"path": path, "type": kind}),
            "{}: the volume mounted at {path}",
            ds.file
        );
        assert_ne!(mount["readOnly"], json!(true), "{}: {path}", ds.file);
    }
    // Bidirectional would need a privileged container; the pins are files
    // in the node's bpffs and need none.
    let (bpffs, _) = mounted_volume(&ds, "/sys/fs/bpf");
    assert_eq!(bpffs["mountPropagation"], json!("HostToContainer"));

    let (config, volume) = mounted_volume(&ds, "/etc/canary");
    let cm = Manifest::load("configmap.yaml");
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        Some(cm.str("/metadata/name")),
        "{}: /etc/canary is the ConfigMap",
        ds.file
    );
    assert_eq!(config["readOnly"], json!(true), "{}: /etc/canary", ds.file);

    // Every volume is mounted; every mount has a volume (mounted_volume).
    let names = |pointer: &str| -> BTreeSet<String> {
        ds.array(pointer)
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names("/spec/template/spec/volumes"),
        names(&format!("{}/volumeMounts", container(&ds))),
        "{}: volumes and mounts",
        ds.file
    );
}

/// The container's command line with `$(VAR)` expanded as the kubelet
/// would: POD_IP is the node's address under hostNetwork, NODE_NAME the
/// node's name.
#[track_caller]
fn command_line(ds: &Manifest) -> Vec<String> {
    let c = container(ds);
    let env = ds.find(&format!("{c}/env"), "name", "POD_IP");
    assert_eq!(
        env["valueFrom"]["fieldRef"]["fieldPath"],
        json!("status.podIP"),
        "{}: POD_IP",
        ds.file
    );
    let strings = |pointer: &str| -> Vec<String> {
        ds.array(pointer)
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap()
                    .replace("$(POD_IP)", "192.0.2.7")
                    .replace("$(NODE_NAME)", "node-7")
            })
            .collect()
    };
    let node = ds.find(&format!("{c}/env"), "name", "NODE_NAME");
    assert_eq!(
        node["valueFrom"]["fieldRef"]["fieldPath"],
        json!("spec.nodeName"),
        "{}: NODE_NAME",
        ds.file
    );
    let mut line = strings(&format!("{c}/command"));
    line.extend(strings(&format!("{c}/args")));
    line
}

#[test]
fn the_command_line_is_one_canaryd_accepts() {
    let ds = Manifest::daemonset();
    let line = command_line(&ds);
    assert!(line[0].ends_with("/canaryd"), "{}: {line:?}", ds.file);
    let args = Args::try_parse_from(&line).unwrap_or_else(|e| panic!("{}: {e}", ds.file));
    // The config file is the ConfigMap's one key, where it is mounted.
    let (mount, _) = mounted_volume(&ds, "/etc/canary");
    let (key, _) = config_file();
    assert_eq!(
        args.config,
        Path::new(mount["mountPath"].as_str().unwrap()).join(key),
        "{}: --config",
        ds.file
    );
    // Metrics on the node's address, at the port the pod declares.
    let port = ds.find(&format!("{}/ports", container(&ds)), "name", "metrics");
    let declared = port["containerPort"].as_u64().unwrap();
    assert_eq!(
        args.metrics_listen,
        Some(SocketAddr::new(
            "192.0.2.7".parse().unwrap(),
            declared as u16
        )),
        "{}: --metrics-listen",
        ds.file
    );
    // Each node under its own name in the fleet.
    assert_eq!(
        args.fleet_host.as_deref(),
        Some("node-7"),
        "{}: --fleet-host",
        ds.file
    );
    // --reset would break every established connection at each restart.
    assert!(
        !args.reset && !args.detach_all && !args.check,
        "{}: {line:?}",
        ds.file
    );
}

#[test]
fn the_probes_and_the_scrape_annotations_ask_for_metrics() {
    let ds = Manifest::daemonset();
    let c = container(&ds);
    // GET /metrics is the only path canaryd's listener serves
    // (src/bin/canaryd/http.rs); anything else is a 404.
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        ds.expect(
            &format!("{c}/{probe}/httpGet"),
            json!({"path": "/metrics", "port": "metrics"}),
        );
    }
    let port = ds.find(&format!("{c}/ports"), "name", "metrics");
    let declared = port["containerPort"].as_u64().unwrap();
    let annotations = "/spec/template/metadata/annotations";
    // Annotations are strings: a bare `true` or 9464 is refused by the API.
    ds.expect(
        &format!("{annotations}/prometheus.io~1scrape"),
        json!("true"),
    );
    ds.expect(
        &format!("{annotations}/prometheus.io~1port"),
        json!(declared.to_string()),
    );
    ds.expect(
        &format!("{annotations}/prometheus.io~1path"),
        json!("/metrics"),
    );
}

#[test]
fn the_configmaps_canary_toml_is_a_valid_config_with_a_fleet() {
    let (_, text) = config_file();
    // Any interface name: they are the nodes', not this machine's.
    let file = "packaging/kubernetes/configmap.yaml: canary.toml";
    let c = config::parse(&text, file, &|_| true).unwrap_or_else(|e| panic!("{e}"));
    let fleet = c.fleet.as_ref().map(|f| &f.name);
    assert!(fleet.is_some(), "{file}: no [fleet]");
    // `host` left out on purpose: one file serves every node, and the
    // DaemonSet passes each node's name with --fleet-host.
    let raw: toml::Table = text.parse().unwrap();
    assert!(
        !raw["fleet"].as_table().unwrap().contains_key("host"),
        "{file}: [fleet] host would give every node the same name"
    );
    // Each path canaryd uses is on one of the node's paths, the same in
    // the pod: not in the container's own filesystem, which goes with it.
    let ds = Manifest::daemonset();
    for (key, path) in [
        ("bpffs", c.daemon.bpffs.as_path()),
        ("state_dir", c.daemon.state_dir.as_path()),
        ("socket", c.daemon.socket.as_path()),
    ] {
        assert!(
            host_mount_holding(&ds, path).is_some(),
            "{file}: daemon.{key} {path:?} is on no hostPath volume"
        );
    }
}

/// The mount path of the hostPath volume `path` is on, if any.
#[track_caller]
fn host_mount_holding(ds: &Manifest, path: &Path) -> Option<PathBuf> {
    let mounts = ds.array(&format!("{}/volumeMounts", container(ds)));
    mounts
        .iter()
        .map(|m| PathBuf::from(m["mountPath"].as_str().unwrap()))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .filter(|m| {
            let (_, volume) = mounted_volume(ds, m.to_str().unwrap());
            volume["hostPath"]["path"].as_str() == m.to_str()
        })
}
