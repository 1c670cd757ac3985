#!/usr/bin/python3
"""compose_check.py - runs deploy/docker-compose.yml without Docker.

Usage: compose_check.py SOURCE_DIR BINARY_DIR   (ctest runs it; needs the
       pg fixture: ORCH_TEST_PG_PATH_FILE or ORCH_TEST_PG_DIR)

No Docker engine runs on our machines, so this test keeps the compose file
true another way:
  1. `docker-compose config` (Debian package docker-compose) validates the
     file and resolves it: interpolation from an env file made of
     .env.example (plus ORCH_RUNTIME=test and DEPLOY_DB_PASSWORD), env_file
     merged into each service's environment;
  2. the resolved YAML is read with python3-yaml;
  3. every orch service is run outside containers with exactly its resolved
     command and environment (plus PATH), in depends_on order, against a fresh
     database of the private test cluster. Only what a container network
     provides is moved: host names (postgres, lease, stage, guard, launcher,
     0.0.0.0) become 127.0.0.1, each port becomes a free loopback port, the
     database URL points at the test database, and paths under a service's
     named volumes move into a temporary folder (a bind-mounted host file,
     /etc/machine-id, stays the host's);
  4. the one-shot `migrate` must exit 0 and leave the schema in place; each
     long-running service must pass its own healthcheck command (orchctl
     health ...), run with its environment, within its start_period; its
     published HTTP port must answer /healthz; SIGTERM must stop it with 0;
  5. the shared process namespace has an init that outlives the services:
     every orch service joins `pid: service:H` of one holder service H,
     which has `init: true`, runs no orch binary and never exits by itself
     (`sleep infinity`); no orch service is itself the target of a `pid:`
     (it would be PID 1, and its exit would kill the others mid-effect).
     The holder is not run here: this host's own PID namespace stands in.
Exit status 0 when all of that holds; 1 with the reason otherwise (a missing
docker-compose or python3-yaml is a failure that says so, never a pass).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HOSTS = {"postgres", "lease", "stage", "guard", "launcher", "0.0.0.0"}
BINARIES = {
    "lease-service": "services/lease/lease-service",
    "stage-service": "services/stage/stage-service",
    "guard-service": "services/guard/guard-service",
    "launcher-service": "services/launcher/launcher-service",
    "orchctl": "tools/orchctl/orchctl",
}


def fail(msg):
    print("compose_check: FAIL: " + msg, flush=True)
    sys.exit(1)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_dir():
    d = os.environ.get("ORCH_TEST_PG_DIR")
    if d:
        return d
    f = os.environ.get("ORCH_TEST_PG_PATH_FILE")
    if not f:
        fail("no test cluster: run through ctest (ORCH_TEST_PG_PATH_FILE)")
    with open(f) as fh:
        return fh.readline().strip()


def fresh_database(src):
    pgctl = os.path.join(src, "tests/support/pgctl.sh")
    admin = subprocess.run(["bash", pgctl, "url", pg_dir()], check=True,
                           capture_output=True, text=True).stdout.strip()
    name = "t_compose_%d" % os.getpid()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", admin, "-c",
                    "CREATE DATABASE %s" % name], check=True, timeout=60)
    return re.sub(r"/[^/?]*(\?|$)", "/" + name + r"\1", admin, count=1)


def resolve(src, tmp):
    if shutil.which("docker-compose") is None:
        fail("docker-compose is not installed (Debian package docker-compose, "
             "listed in deploy/local/packages.sh): the compose file is NOT checked")
    try:
        import yaml  # noqa: F401  (python3-yaml)
    except ImportError:
        fail("python3-yaml is not installed: the compose file is NOT checked")
    env_file = os.path.join(tmp, "compose.env")
    with open(os.path.join(src, ".env.example")) as fh:
        text = fh.read()
    text = re.sub(r"(?m)^ORCH_RUNTIME=.*$", "ORCH_RUNTIME=test", text)
    text += "\nDEPLOY_DB_PASSWORD=unused-by-the-test-cluster\n"
    with open(env_file, "w") as fh:
        fh.write(text)
    env = dict(os.environ, DEPLOY_ENV_FILE=env_file)
    r = subprocess.run(["docker-compose", "--env-file", env_file, "-f",
                        os.path.join(src, "deploy/docker-compose.yml"), "config"],
                       env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail("docker-compose config rejected the file:\n" + r.stderr)
    print("docker-compose config: the file is valid", flush=True)
    return yaml.safe_load(r.stdout)


class Mover:
    """Moves container-network addresses and volume paths onto this host."""

    def __init__(self, db_url, tmp):
        self.ports = {}
        self.db_url = db_url
        self.tmp = tmp

    def port(self, p):
        if p not in self.ports:
            self.ports[p] = free_port()
        return self.ports[p]

    def value(self, key, val, volumes):
        if key == "ORCH_DATABASE_URL":
            return self.db_url
        for target in volumes:
            if val == target or val.startswith(target + "/"):
                return os.path.join(self.tmp, "volumes", val.lstrip("/"))

        def sub(m):
            return "%s127.0.0.1:%d" % (m.group(1), self.port(int(m.group(3))))
        return re.sub(r"(^|//)(%s):(\d+)" % "|".join(re.escape(h) for h in HOSTS),
                      sub, val)


def environment(svc, mover):
    volumes, binds = [], {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            source, target = v.get("source", ""), v.get("target")
        else:
            source, target = v.split(":")[0], v.split(":")[1]
        if source.startswith("/"):  # a file of the host (bind mount): used as is
            binds[target] = source
        else:
            volumes.append(target)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k, v in (svc.get("environment") or {}).items():
        val = "" if v is None else str(v)
        env[k] = binds[val] if val in binds else mover.value(k, val, volumes)
    for target in volumes:
        os.makedirs(os.path.join(mover.tmp, "volumes", target.lstrip("/")), exist_ok=True)
    return env


def argv_of(cmd, binary_dir):
    if isinstance(cmd, str):
        cmd = cmd.split()
    if not cmd or cmd[0] not in BINARIES:
        fail("command %r does not start a binary of the image" % (cmd,))
    return [os.path.join(binary_dir, BINARIES[cmd[0]])] + list(cmd[1:])


def seconds(text, default):
    m = re.fullmatch(r"(\d+)s", str(text or ""))
    return int(m.group(1)) if m else default


def order(services):
    """depends_on order; fails on a cycle."""
    done, out = set(), []
    for _ in range(len(services) + 1):
        for name, svc in services.items():
            deps = set(svc.get("depends_on") or {})
            if name not in done and deps <= done:
                done.add(name)
                out.append(name)
    if len(out) != len(services):
        fail("depends_on has a cycle or names a missing service")
    return out


def healthy(name, svc, env, binary_dir, procs):
    hc = svc.get("healthcheck") or {}
    test = hc.get("test") or []
    if not test or test[0] != "CMD":
        fail("%s: healthcheck must be [\"CMD\", ...], got %r" % (name, test))
    argv = argv_of(test[1:], binary_dir)
    budget = seconds(hc.get("start_period"), 40) + seconds(hc.get("interval"), 10)
    until = time.monotonic() + budget
    last = ""
    while time.monotonic() < until:
        if procs[name].poll() is not None:
            fail("%s exited with %d before it was healthy" % (name, procs[name].returncode))
        r = subprocess.run(argv, env=env, capture_output=True, text=True,
                           timeout=seconds(hc.get("timeout"), 5) + 5)
        if r.returncode == 0:
            print("%s: healthcheck %s passed" % (name, " ".join(test[1:])), flush=True)
            return
        last = r.stdout + r.stderr
        time.sleep(0.5)
    fail("%s: healthcheck did not pass within %d s:\n%s" % (name, budget, last))


ORCH_SERVICES = ("lease", "stage", "guard", "launcher")


def check_init(services):
    """Step 5; returns the holder's name."""
    holders = set()
    for name in ORCH_SERVICES:
        pid = str(services[name].get("pid") or "")
        if not pid.startswith("service:"):
            fail("%s: pid must be \"service:<holder>\" (one namespace for the four "
                 "services), got %r" % (name, pid or None))
        holders.add(pid[len("service:"):])
    if len(holders) != 1:
        fail("the orch services join different process namespaces: %s" % sorted(holders))
    holder = holders.pop()
    if holder not in services:
        fail("pid: service:%s names no service" % holder)
    for name, svc in services.items():
        pid = str(svc.get("pid") or "")
        if pid.startswith("service:") and name in ORCH_SERVICES + ("migrate",) and \
                pid[len("service:"):] in ORCH_SERVICES:
            fail("%s joins the namespace of orch service %s: its exit would kill %s"
                 % (name, pid[len("service:"):], name))
    h = services[holder]
    if h.get("init") is not True:
        fail("%s (PID 1 of the shared namespace) must have init: true, so that orphans "
             "are reaped and no service is PID 1" % holder)
    cmd = h.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    if not cmd or cmd[0] in BINARIES:
        fail("%s must not run an orch binary (%r): its exit would end the namespace"
             % (holder, cmd))
    if cmd != ["sleep", "infinity"]:
        fail("%s must run [\"sleep\", \"infinity\"] under its init, got %r" % (holder, cmd))
    if h.get("restart") not in ("always", "unless-stopped"):
        fail("%s must restart (always or unless-stopped), got %r" % (holder, h.get("restart")))
    for name in ORCH_SERVICES:
        if holder not in (services[name].get("depends_on") or {}):
            fail("%s must depend on %s, whose namespace it joins" % (name, holder))
    print("process namespace: %s (init: true, %s) holds %s" %
          (holder, " ".join(cmd), ", ".join(ORCH_SERVICES)), flush=True)
    return holder


def check_ports(name, svc, mover):
    for p in svc.get("ports") or []:
        target = int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1].split("/")[0])
        if target not in mover.ports:
            fail("%s publishes port %d, which no address of its environment uses"
                 % (name, target))
        url = "http://127.0.0.1:%d/healthz" % mover.ports[target]
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status != 200:
                fail("%s: published port %d: /healthz answered %d" % (name, target, r.status))
        print("%s: published port %d answers /healthz" % (name, target), flush=True)


def main():
    if len(sys.argv) != 3:
        fail("usage: compose_check.py SOURCE_DIR BINARY_DIR")
    src, binary_dir = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="orch-compose.")
    cfg = resolve(src, tmp)
    services = cfg.get("services") or {}
    for need in ("postgres", "migrate", "lease", "stage", "guard", "launcher"):
        if need not in services:
            fail("the compose file has no service %r" % need)
    holder = check_init(services)
    mover = Mover(fresh_database(src), tmp)
    log_dir = os.environ.get("ORCH_TEST_LOG_DIR") or tmp
    procs, envs, logs = {}, {}, {}
    try:
        for name in order(services):
            svc = services[name]
            if name == "postgres":
                continue  # the private test cluster stands in for it
            if name == holder:
                continue  # this host's PID namespace stands in for it
            envs[name] = environment(svc, mover)
            argv = argv_of(svc.get("command"), binary_dir)
            logs[name] = open(os.path.join(log_dir, "compose-%s.log" % name), "w")
            procs[name] = subprocess.Popen(argv, env=envs[name], stdin=subprocess.DEVNULL,
                                           stdout=logs[name], stderr=subprocess.STDOUT)
            print("%s: started %s" % (name, " ".join(argv)), flush=True)
            if svc.get("restart") == "no":
                try:
                    rc = procs[name].wait(timeout=120)
                except subprocess.TimeoutExpired:
                    fail("%s (one-shot) still runs after 120 s" % name)
                if rc != 0:
                    fail("%s (one-shot) exited %d; see %s" % (name, rc, logs[name].name))
                n = subprocess.run(["psql", "-X", "-A", "-t", mover.db_url, "-c",
                                    "SELECT count(*) FROM schema_migrations"],
                                   capture_output=True, text=True, timeout=60).stdout.strip()
                if not n.isdigit() or int(n) == 0:
                    fail("%s exited 0 but left no applied migration (%r)" % (name, n))
                print("%s: exited 0, %s migration(s) recorded" % (name, n), flush=True)
                continue
            healthy(name, svc, envs[name], binary_dir, procs)
            check_ports(name, svc, mover)
        for name, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            try:
                rc = p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                fail("%s did not stop within 40 s of SIGTERM" % name)
            if rc != 0:
                fail("%s exited %d after SIGTERM" % (name, rc))
        print("compose_check: every service ran as the compose file says", flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
