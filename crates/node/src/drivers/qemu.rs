//! The `qemu` driver: runs a virtual machine as a QEMU process (in its own process group,
//! serial console in the instance log), controlled through QMP: status, graceful powerdown,
//! quit. QEMU's image locking stays on, so a disk on shared storage is never opened by two
//! running VMs.
//!
//! Params: `kernel` + `initrd` (+ `append`) or `disk` (image path), `vcpus` (default 1),
//! `memory_mb` (default 256), `nics` (list of `{"mode": "user", "forwards": [{"host":
//! "127.0.0.1:8080", "guest": 80}]}`, `{"mode": "tap", "ifname": "tap0"}` or `{"mode":
//! "bridge", "bridge": "br0"}`), `accel` (auto | kvm | tcg; auto picks KVM only when /dev/kvm
//! is usable and the CPU shows vmx or svm), `qemu` (the binary), `stop_timeout` (powerdown
//! grace, default 30s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::params::{DriverError, Params, param_err};
use super::process::{ProcessSpec, RunningProcess};
use super::qmp::Qmp;

const PARAMS: [&str; 11] = [
    "kernel",
    "initrd",
    "append",
    "disk",
    "vcpus",
    "memory_mb",
    "nics",
    "accel",
    "qemu",
    "stop_timeout",
    "disk_format",
];

/// Which accelerator to use: KVM only when asked for or when it really works here.
pub fn choose_accel(
    requested: &str,
    kvm_usable: bool,
    cpu_flags: &str,
) -> Result<&'static str, String> {
    let hw = cpu_flags
        .split_whitespace()
        .any(|f| f == "vmx" || f == "svm");
    match requested {
        "kvm" => Ok("kvm"),
        "tcg" => Ok("tcg"),
        "auto" if kvm_usable && hw => Ok("kvm"),
        "auto" => Ok("tcg"),
        other => Err(format!("`{other}`: expected auto, kvm or tcg")),
    }
}

/// Whether this host can run KVM guests (`/dev/kvm` opens and the CPU has vmx/svm).
fn host_accel(requested: &str) -> Result<&'static str, String> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("flags")).map(String::from))
        .unwrap_or_default();
    choose_accel(requested, kvm, &flags)
}

/// A VM to run, read from the instance's params.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    /// The QEMU command line (without the QMP socket, added at start).
    pub process: ProcessSpec,
    pub stop_timeout: Duration,
}

impl QemuSpec {
    /// Reads and checks the params of a `qemu` instance.
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, DriverError> {
        let p = Params::check(params, "qemu", &PARAMS)?;
        let text = |name| p.text(name);
        let number = |name: &'static str, default: u64, min: u64| -> Result<u64, DriverError> {
            match params.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_u64().filter(|n| *n >= min).ok_or_else(|| {
                    param_err(
                        name,
                        format!("{v}: expected a whole number of at least {min}"),
                    )
                }),
            }
        };
        let file = |name: &'static str| -> Result<Option<String>, DriverError> {
            let Some(p) = text(name)? else {
                return Ok(None);
            };
            if !Path::new(&p).is_file() {
                return Err(param_err(name, format!("no file at {p}")));
            }
            Ok(Some(p))
        };
        let accel = host_accel(text("accel")?.as_deref().unwrap_or("auto"))
            .map_err(|e| param_err("accel", e))?;
        let mut args: Vec<String> = vec![
            "-accel".into(),
            if accel == "tcg" {
                "tcg,tb-size=16".into()
            } else {
                "kvm".into()
            },
            "-cpu".into(),
            if accel == "tcg" {
                "qemu64".into()
            } else {
                "host".into()
            },
            "-m".into(),
            number("memory_mb", 256, 16)?.to_string(),
            "-smp".into(),
            number("vcpus", 1, 1)?.to_string(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            "stdio".into(),
            "-monitor".into(),
            "none".into(),
            "-no-reboot".into(),
        ];
        match (file("kernel")?, file("disk")?) {
            (Some(kernel), None) => {
                args.extend(["-kernel".into(), kernel]);
                if let Some(initrd) = file("initrd")? {
                    args.extend(["-initrd".into(), initrd]);
                }
                args.extend([
                    "-append".into(),
                    text("append")?.unwrap_or_else(|| "console=ttyS0 panic=-1 quiet".into()),
                ]);
            }
            (None, Some(disk)) => {
                let format = text("disk_format")?.unwrap_or_else(|| "qcow2".into());
                args.extend([
                    "-drive".into(),
                    format!("file={disk},if=virtio,format={format}"),
                ]);
            }
            (Some(_), Some(_)) => {
                return Err(param_err(
                    "disk",
                    "give either kernel (+ initrd) or disk, not both",
                ));
            }
            (None, None) => {
                return Err(param_err(
                    "kernel",
                    "missing: give kernel (+ initrd) or disk (an image path)",
                ));
            }
        }
        let nics = match params.get("nics") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(other) => return Err(param_err("nics", format!("expected a list, got {other}"))),
        };
        if nics.is_empty() {
            args.extend(["-nic".into(), "none".into()]);
        }
        for (i, nic) in nics.iter().enumerate() {
            args.extend(nic_args(i, nic)?);
        }
        let stop_timeout = p.duration("stop_timeout", Duration::from_secs(30))?;
        Ok(QemuSpec {
            process: ProcessSpec {
                command: text("qemu")?.unwrap_or_else(|| "qemu-system-x86_64".into()),
                args,
                env: Default::default(),
                working_dir: None,
                user: None,
                stop_timeout,
            },
            stop_timeout,
        })
    }
}

/// The QEMU arguments of NIC number `i`.
fn nic_args(i: usize, nic: &Value) -> Result<Vec<String>, DriverError> {
    let bad = |why: String| param_err("nics", format!("item {i}: {why}"));
    let id = format!("n{i}");
    let netdev = match nic["mode"].as_str() {
        Some("user") => {
            let mut d = format!("user,id={id}");
            for f in nic["forwards"].as_array().into_iter().flatten() {
                let host: SocketAddr = f["host"]
                    .as_str()
                    .and_then(|h| h.parse().ok())
                    .ok_or_else(|| bad(format!("forward {f}: host must be IP:PORT")))?;
                let guest = f["guest"]
                    .as_u64()
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| bad(format!("forward {f}: guest must be a port")))?;
                d.push_str(&format!(
                    ",hostfwd=tcp:{}:{}-:{guest}",
                    host.ip(),
                    host.port()
                ));
            }
            d
        }
        Some("tap") => {
            let ifname = nic["ifname"]
                .as_str()
                .ok_or_else(|| bad("tap needs ifname".into()))?;
            format!("tap,id={id},ifname={ifname},script=no,downscript=no")
        }
        Some("bridge") => {
            let br = nic["bridge"]
                .as_str()
                .ok_or_else(|| bad("bridge needs bridge".into()))?;
            format!("bridge,id={id},br={br}")
        }
        other => return Err(bad(format!("mode {other:?}: expected user, tap or bridge"))),
    };
    Ok(vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!("virtio-net-pci,netdev={id},romfile="),
    ])
}

/// A running VM: its QEMU process, its QMP socket, and what QMP last said was wrong.
pub struct RunningVm {
    pub process: RunningProcess,
    qmp: PathBuf,
    stop_timeout: Duration,
    /// Set when QMP reports a state the VM does not recover from by itself.
    broken: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    monitor: tokio::task::JoinHandle<()>,
}

/// How often QMP is asked for the VM's status.
const MONITOR_INTERVAL: Duration = Duration::from_secs(2);

/// Asks QMP for the status on an interval; records a status the VM cannot leave alone.
async fn monitor(qmp: PathBuf, broken: std::sync::Arc<std::sync::Mutex<Option<String>>>) {
    loop {
        tokio::time::sleep(MONITOR_INTERVAL).await;
        let status = match Qmp::connect(&qmp).await {
            Ok(mut q) => q.status().await,
            Err(e) => Err(e),
        };
        if let Ok(s) = status
            && matches!(
                s.as_str(),
                "internal-error" | "guest-panicked" | "io-error" | "shutdown"
            )
        {
            *broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("VM status {s}"));
            return;
        }
    }
}

impl RunningVm {
    /// Starts the VM; its QMP socket is `qmp`, its console goes to `log`.
    pub fn start(spec: &QemuSpec, qmp: &Path, log: &Path) -> Result<Self, DriverError> {
        let _ = std::fs::remove_file(qmp);
        let mut p = spec.process.clone();
        p.args.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
        ]);
        let process = RunningProcess::start(&p, log).map_err(|e| match e {
            DriverError::Start { command, reason } if reason.contains("no such program") => {
                DriverError::Start {
                    command,
                    reason: "QEMU is not installed (apt-get install qemu-system-x86)".into(),
                }
            }
            e => e,
        })?;
        let broken = std::sync::Arc::default();
        let monitor = tokio::spawn(monitor(qmp.to_path_buf(), std::sync::Arc::clone(&broken)));
        Ok(RunningVm {
            process,
            qmp: qmp.to_path_buf(),
            stop_timeout: spec.stop_timeout,
            broken,
            monitor,
        })
    }

    /// What QMP reported wrong with the VM, if anything.
    pub fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The VM's status through QMP.
    #[cfg(test)]
    pub async fn status(&self) -> Result<String, String> {
        Qmp::connect(&self.qmp).await?.status().await
    }

    /// Graceful powerdown (ACPI), then `quit` after the stop timeout, then SIGKILL.
    pub async fn stop(mut self) -> String {
        self.monitor.abort();
        if let Ok(mut q) = Qmp::connect(&self.qmp).await {
            let _ = q.execute("system_powerdown").await;
            if let Ok(exit) = tokio::time::timeout(self.stop_timeout, self.process.wait()).await {
                return format!("powered down ({exit})");
            }
            let _ = q.execute("quit").await;
        }
        let exit = self.process.stop(Duration::from_secs(5)).await;
        format!("quit ({exit})")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn auto_picks_kvm_only_with_a_usable_device_and_hardware_support() {
        assert_eq!(choose_accel("auto", true, "fpu vmx sse"), Ok("kvm"));
        assert_eq!(choose_accel("auto", true, "fpu sse"), Ok("tcg"));
        assert_eq!(choose_accel("auto", false, "fpu svm"), Ok("tcg"));
        assert_eq!(choose_accel("kvm", false, ""), Ok("kvm"));
        assert!(choose_accel("fast", true, "vmx").is_err());
    }

    #[test]
    fn params_build_the_command_line_and_bad_ones_are_named() {
        let spec = QemuSpec::from_params(
            json!({"kernel": "/etc/hostname", "accel": "tcg", "memory_mb": 128,
                   "nics": [{"mode": "user", "forwards": [{"host": "127.0.0.1:18080", "guest": 80}]},
                            {"mode": "tap", "ifname": "tap7"}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        let line = spec.process.args.join(" ");
        assert!(
            line.contains("-accel tcg,tb-size=16 -cpu qemu64 -m 128"),
            "{line}"
        );
        assert!(
            line.contains("user,id=n0,hostfwd=tcp:127.0.0.1:18080-:80"),
            "{line}"
        );
        assert!(line.contains("tap,id=n1,ifname=tap7,script=no"), "{line}");
        for (bad, expect) in [
            (json!({}), "param `kernel`: missing"),
            (
                json!({"kernel": "/nonexistent/vmlinuz"}),
                "no file at /nonexistent/vmlinuz",
            ),
            (
                json!({"kernel": "/etc/hostname", "accel": "warp"}),
                "param `accel`",
            ),
            (
                json!({"kernel": "/etc/hostname", "memory_mb": 1}),
                "at least 16",
            ),
            (
                json!({"kernel": "/etc/hostname", "nics": [{"mode": "wifi"}]}),
                "item 0: mode",
            ),
            (
                json!({"kernel": "/etc/hostname", "nics": [{"mode": "user", "forwards": [{"host": "x", "guest": 80}]}]}),
                "host must be IP:PORT",
            ),
            (
                json!({"kernel": "/etc/hostname", "cdrom": "x"}),
                "unknown param `cdrom`",
            ),
        ] {
            let e = QemuSpec::from_params(bad.as_object().unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(expect), "{bad}: {e}");
        }
    }

    /// The test guest from scripts/build-test-guest.sh, if built.
    fn guest() -> Option<(PathBuf, PathBuf)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-guest");
        let (k, i) = (dir.join("vmlinuz"), dir.join("initrd.gz"));
        (k.is_file() && i.is_file()).then_some((k, i))
    }

    #[tokio::test]
    async fn a_tiny_guest_boots_answers_http_reports_running_and_is_stopped() {
        let Some((kernel, initrd)) = guest() else {
            eprintln!(
                "SKIPPED: no test guest (scripts/build-test-guest.sh builds it; setup-test-deps.sh runs it)"
            );
            return;
        };
        if std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: qemu-system-x86_64 missing (apt-get install qemu-system-x86)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("buoy-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = 20000 + (std::process::id() % 10000) as u16;
        let spec = QemuSpec::from_params(
            json!({"kernel": kernel, "initrd": initrd, "memory_mb": 128, "stop_timeout": "1s",
                   "nics": [{"mode": "user", "forwards": [{"host": format!("127.0.0.1:{port}"), "guest": 80}]}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        let log = dir.join("vm.log");
        let mut vm = RunningVm::start(&spec, &dir.join("vm.qmp"), &log).unwrap();
        // The guest prints its marker on the serial console and answers HTTP.
        let mut answered = String::new();
        for _ in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.contains("buoy guest") {
                    answered = out;
                    break;
                }
            }
            assert!(
                vm.process.poll_exit().is_none(),
                "QEMU exited:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            answered.contains("200 OK"),
            "no HTTP answer from the guest: {answered}"
        );
        // The console is copied to the log by a task on this (single-threaded) runtime: the
        // blocking HTTP exchange above may have run before it copied the marker, so give it time.
        let mut console = String::new();
        for _ in 0..50 {
            console = std::fs::read_to_string(&log).unwrap_or_default();
            if console.contains("BUOY-GUEST-READY") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            console.contains("BUOY-GUEST-READY"),
            "no marker on the console:\n{console}"
        );
        assert_eq!(vm.status().await.as_deref(), Ok("running"));
        // busybox's init ignores ACPI powerdown: after the grace period, QMP quit ends it.
        let how = vm.stop().await;
        assert!(
            how.starts_with("quit") || how.starts_with("powered down"),
            "{how}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_crashed_vm_is_detected() {
        let Some((kernel, initrd)) = guest() else {
            eprintln!("SKIPPED: no test guest");
            return;
        };
        if std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: qemu-system-x86_64 missing");
            return;
        }
        let dir = std::env::temp_dir().join(format!("buoy-qemu-crash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = QemuSpec::from_params(
            json!({"kernel": kernel, "initrd": initrd, "memory_mb": 128})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let mut vm = RunningVm::start(&spec, &dir.join("vm.qmp"), &dir.join("vm.log")).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(vm.process.poll_exit().is_none());
        // SAFETY: the VM's own process, by PID.
        unsafe { libc::kill(vm.process.pid() as i32, libc::SIGKILL) };
        let exit = vm.process.wait().await;
        assert_eq!(exit, super::super::process::Exit::Signal(libc::SIGKILL));
        let _ = std::fs::remove_dir_all(dir);
    }
}
