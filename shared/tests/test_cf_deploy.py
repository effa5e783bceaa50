"""``make deploy``: the exact cf commands DRY_RUN prints, and the order a real run takes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml

from aerie.cf.deploy import main
from aerie.cf.secrets import secrets_vars

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("tenants", "projects", "flags", "audit")
#: The staged apps in the order deploy pushes them: the services, then the synthetic monitor.
APPS = (*SERVICES, "monitor")


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    """Staged apps as far as deploy looks at them: each app's manifest in its folder.

    The monitor's folder is made first: the order deploy pushes in must not be the disk's.
    """
    root = tmp_path / "stage"
    (root / "monitor").mkdir(parents=True)
    shutil.copy(REPO / "manifests" / "monitor.yml", root / "monitor" / "manifest.yml")
    for name in SERVICES:
        (root / name).mkdir(parents=True)
        shutil.copy(REPO / "services" / name / "manifest.yml", root / name / "manifest.yml")
    return root


def _python() -> str:
    exe = Path(sys.executable)
    return str(exe.relative_to(REPO)) if exe.is_relative_to(REPO) else str(exe)


def test_dry_run_prints_the_exact_commands(stage, tmp_path, capsys):
    secrets = tmp_path / "absent.secrets.yml"
    argv = ["staging", "--repo", str(REPO), "--stage", str(stage), "--version", "1.4.0", "--commit", "0123abcd"]
    assert main([*argv, "--secrets", str(secrets)], environ={"DRY_RUN": "1"}) == 0
    common = "--vars-file manifests/vars/staging.yml --var version=1.4.0 --var commit=0123abcd"
    secrets_of = {
        "tenants": "AERIE_SIGNING_KEYS, AERIE_BOOTSTRAP_CLIENT_ID, AERIE_BOOTSTRAP_CLIENT_SECRET,"
        " AERIE_SERVICE_CLIENTS",
        **{s: "AERIE_CLIENT_ID, AERIE_CLIENT_SECRET" for s in SERVICES[1:]},
        "monitor": "AERIE_BOOTSTRAP_CLIENT_ID, AERIE_BOOTSTRAP_CLIENT_SECRET",
    }
    pushes = []
    for s in APPS:
        ref = shlex.quote(f"<0600 JSON file: {secrets_of[s]} from {secrets}>")
        pushes += [
            f"if cf service aerie-secrets-{s} >/dev/null 2>&1;"
            f" then cf update-user-provided-service aerie-secrets-{s} -p {ref};"
            f" else cf create-user-provided-service aerie-secrets-{s} -p {ref} -t aerie-secrets; fi",
            f"cf push aerie-{s} -f {stage}/{s}/manifest.yml -p {stage}/{s} {common} --strategy rolling",
        ]
    smoke = (
        "AERIE_AUDIT_URL=https://aerie-audit.apps.staging.example.com"
        f" AERIE_BOOTSTRAP_CLIENT_ID='<bootstrap_client_id from {secrets}>'"
        f" AERIE_BOOTSTRAP_CLIENT_SECRET='<bootstrap_client_secret from {secrets}>'"
        " AERIE_FLAGS_URL=https://aerie-flags.apps.staging.example.com"
        " AERIE_PROJECTS_URL=https://aerie-projects.apps.staging.example.com"
        " AERIE_TENANTS_URL=https://aerie-tenants.apps.staging.example.com"
        f" {_python()} -m pytest e2e -m smoke -q -p no:cacheprovider"
    )
    assert capsys.readouterr().out.splitlines() == [
        "cf service aerie-redis >/dev/null 2>&1 || cf create-service p.redis on-demand-persistent aerie-redis"
        """ -c '{"maxmemory-policy":"noeviction"}' --wait""",
        *pushes,
        smoke,
    ]


def test_dry_run_never_prints_a_secret(stage, tmp_path, capsys):
    secrets = tmp_path / "production.secrets.yml"
    made = secrets_vars()
    secrets.write_text(yaml.safe_dump(made))
    argv = ["production", "tenants", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets)]
    assert main([*argv, "--dry-run"], environ={}) == 0
    out = capsys.readouterr().out
    assert "cf push aerie-tenants" in out and "aerie-projects" not in out
    assert "--var version=" in out
    for name, value in made.items():
        assert value not in out, name


def test_a_missing_variable_stops_before_any_command(stage, tmp_path, capsys):
    public = tmp_path / "repo"
    shutil.copytree(REPO / "manifests", public / "manifests")
    (public / "services").mkdir()
    vars_file = public / "manifests" / "vars" / "staging.yml"
    data = yaml.safe_load(vars_file.read_text())
    del data["jwks_url"]
    vars_file.write_text(yaml.safe_dump(data))
    argv = ["staging", "--repo", str(public), "--stage", str(stage), "--version", "1", "--commit", "c"]
    assert main([*argv, "--secrets", str(tmp_path / "none.yml")], environ={"DRY_RUN": "1"}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no value for ((jwks_url))" in captured.err


def test_a_real_run_needs_the_secrets_file(stage, tmp_path, capsys):
    argv = ["staging", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(tmp_path / "none.yml")]
    assert main(argv, environ={}) == 1
    assert "python -m aerie.cf.secrets staging" in capsys.readouterr().err


def _fake_cf(tmp_path: Path, service_exists: bool) -> Path:
    """A ``cf`` that records its arguments; ``cf service`` answers as told.

    For a user-provided service it also records the ``-p`` file's path and mode, and keeps
    a copy of what it held, since deploy removes the file once ``cf`` returns.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cf = bin_dir / "cf"
    status = 0 if service_exists else 1
    cf.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/cf.log\n'
        'case "$1" in *-user-provided-service)\n'
        f'  stat -c "$2 %a" "$4" >> {tmp_path}/modes.log; cat "$4" > {tmp_path}/"$2".json\n'
        f'  echo "$4" >> {tmp_path}/files.log;;\n'
        "esac\n"
        f'if [ "$1" = service ]; then exit {status}; fi\n'
        'if [ "$1" = push ] && [ "$2" = aerie-flags ]; then exit 7; fi\n'
        "exit 0\n"
    )
    cf.chmod(cf.stat().st_mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.parametrize("exists", [True, False])
def test_a_real_run_creates_redis_only_when_missing_and_pushes_in_order(stage, tmp_path, monkeypatch, exists):
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(secrets_vars()))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, exists)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "tenants", "projects", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets)]
    assert main([*argv, "--no-smoke", "--version", "2.0.0", "--commit", "feedbeef"], environ={}) == 0
    calls = (tmp_path / "cf.log").read_text().splitlines()
    assert calls[0] == "service aerie-redis"
    if not exists:
        assert (
            calls[1]
            == 'create-service p.redis on-demand-persistent aerie-redis -c {"maxmemory-policy":"noeviction"} --wait'
        )
    pushes = [c for c in calls if c.startswith("push ")]
    assert [c.split()[1] for c in pushes] == ["aerie-tenants", "aerie-projects"]
    assert all(c.endswith("--strategy rolling") for c in pushes)


def test_a_failed_push_stops_the_deploy(stage, tmp_path, monkeypatch, capsys):
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(secrets_vars()))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, True)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets), "--no-smoke"]
    assert main(argv, environ={}) == 1
    pushed = [c.split()[1] for c in (tmp_path / "cf.log").read_text().splitlines() if c.startswith("push")]
    assert pushed == ["aerie-tenants", "aerie-projects", "aerie-flags"], "audit is not pushed after flags failed"
    assert "cf push aerie-flags failed with status 7" in capsys.readouterr().err


# -- the Redis service: never evicting, never a cache plan ---------------------------------------


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_vars_files_name_a_persistent_plan_that_does_not_evict(environment):
    data = yaml.safe_load((REPO / "manifests" / "vars" / f"{environment}.yml").read_text())
    assert "cache" not in data["redis_plan"].lower(), "a cache plan evicts and keeps nothing across a restart"
    assert data["redis_config"]["maxmemory-policy"] == "noeviction"


def _vars_repo(tmp_path: Path, **changes: object) -> Path:
    public = tmp_path / "repo"
    shutil.copytree(REPO / "manifests", public / "manifests")
    (public / "services").mkdir()
    vars_file = public / "manifests" / "vars" / "staging.yml"
    data = yaml.safe_load(vars_file.read_text())
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    vars_file.write_text(yaml.safe_dump(data))
    return public


def _dry_run(repo: Path, stage: Path, tmp_path: Path) -> int:
    argv = ["staging", "--repo", str(repo), "--stage", str(stage), "--version", "1", "--commit", "c"]
    return main([*argv, "--secrets", str(tmp_path / "none.yml")], environ={"DRY_RUN": "1"})


def test_an_evicting_policy_stops_the_deploy_before_any_command(stage, tmp_path, capsys):
    repo = _vars_repo(tmp_path, redis_config={"maxmemory-policy": "allkeys-lru"})
    assert _dry_run(repo, stage, tmp_path) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "maxmemory-policy 'allkeys-lru'" in captured.err and "noeviction" in captured.err


def test_noeviction_is_set_when_the_vars_leave_it_out_and_other_parameters_pass(stage, tmp_path, capsys):
    repo = _vars_repo(tmp_path, redis_config=None)
    assert _dry_run(repo, stage, tmp_path) == 0
    assert """-c '{"maxmemory-policy":"noeviction"}'""" in capsys.readouterr().out.splitlines()[0]
    repo = _vars_repo(tmp_path / "again", redis_config={"appendonly": "yes"})
    assert _dry_run(repo, stage, tmp_path) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert """-c '{"appendonly":"yes","maxmemory-policy":"noeviction"}'""" in first


def test_redis_config_must_be_a_mapping(stage, tmp_path, capsys):
    repo = _vars_repo(tmp_path, redis_config="noeviction")
    assert _dry_run(repo, stage, tmp_path) == 1
    assert "must be a mapping" in capsys.readouterr().err


# -- the secrets services: one per app, created or updated before its push -----------------------


@pytest.mark.parametrize("exists", [True, False])
def test_each_apps_secrets_service_is_created_or_updated_right_before_its_push(stage, tmp_path, monkeypatch, exists):
    made = secrets_vars()
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(made))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, exists)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "tenants", "projects", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets)]
    assert main([*argv, "--no-smoke", "--version", "2.0.0", "--commit", "feedbeef"], environ={}) == 0
    calls = [c for c in (tmp_path / "cf.log").read_text().splitlines() if "aerie-redis" not in c]
    files = (tmp_path / "files.log").read_text().splitlines()
    if exists:
        upserts = [
            f"update-user-provided-service aerie-secrets-{s} -p {f}"
            for s, f in zip(("tenants", "projects"), files, strict=True)
        ]
    else:
        upserts = [
            f"create-user-provided-service aerie-secrets-{s} -p {f} -t aerie-secrets"
            for s, f in zip(("tenants", "projects"), files, strict=True)
        ]
    assert [c.split(" -f ")[0] for c in calls] == [
        "service aerie-secrets-tenants",
        upserts[0],
        "push aerie-tenants",
        "service aerie-secrets-projects",
        upserts[1],
        "push aerie-projects",
    ]
    assert (tmp_path / "modes.log").read_text().splitlines() == [
        "aerie-secrets-tenants 600",
        "aerie-secrets-projects 600",
    ]
    assert not [f for f in files if Path(f).exists()], "the credentials file outlives the cf call"
    assert json.loads((tmp_path / "aerie-secrets-tenants.json").read_text()) == {
        "AERIE_SIGNING_KEYS": made["signing_keys"],
        "AERIE_BOOTSTRAP_CLIENT_ID": made["bootstrap_client_id"],
        "AERIE_BOOTSTRAP_CLIENT_SECRET": made["bootstrap_client_secret"],
        "AERIE_SERVICE_CLIENTS": made["service_clients"],
    }
    assert json.loads((tmp_path / "aerie-secrets-projects.json").read_text()) == {
        "AERIE_CLIENT_ID": made["projects_client_id"],
        "AERIE_CLIENT_SECRET": made["projects_client_secret"],
    }


def test_no_secret_reaches_a_cf_command_line(stage, tmp_path, monkeypatch):
    made = secrets_vars()
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(made))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, True)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "tenants", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets), "--no-smoke"]
    assert main(argv, environ={}) == 0
    log = (tmp_path / "cf.log").read_text()
    assert "update-user-provided-service aerie-secrets-tenants" in log
    for name, value in made.items():
        assert value not in log, name


def test_a_secrets_file_lacking_an_apps_secret_stops_before_any_command(stage, tmp_path, monkeypatch, capsys):
    made = secrets_vars()
    del made["projects_client_secret"]
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(made))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, True)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets), "--no-smoke"]
    assert main(argv, environ={}) == 1
    assert not (tmp_path / "cf.log").exists()
    assert f"{secrets} has no projects_client_secret (the secrets of projects)" in capsys.readouterr().err


def test_a_manifest_naming_a_secret_stops_the_deploy_and_cf_push_never_gets_the_secrets_file(stage, tmp_path, capsys):
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(secrets_vars()))
    argv = ["staging", "projects", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets), "--dry-run"]
    assert main(argv, environ={}) == 0
    assert str(secrets) not in next(line for line in capsys.readouterr().out.splitlines() if "cf push" in line)
    manifest = stage / "projects" / "manifest.yml"
    manifest.write_text(
        manifest.read_text().replace("    env:\n", "    env:\n      AERIE_CLIENT_SECRET: ((projects_client_secret))\n")
    )
    assert main(argv, environ={}) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no value for ((projects_client_secret))" in captured.err


def test_the_monitor_is_pushed_after_every_service_with_the_bootstrap_client_in_its_own_secrets_service(
    stage, tmp_path, monkeypatch
):
    made = secrets_vars()
    secrets = tmp_path / "staging.secrets.yml"
    secrets.write_text(yaml.safe_dump(made))
    monkeypatch.setenv("PATH", f"{_fake_cf(tmp_path, True)}{os.pathsep}{os.environ['PATH']}")
    argv = ["staging", "monitor", "tenants", "--repo", str(REPO), "--stage", str(stage), "--secrets", str(secrets)]
    assert main([*argv, "--no-smoke", "--version", "2.0.0", "--commit", "feedbeef"], environ={}) == 0
    calls = [c for c in (tmp_path / "cf.log").read_text().splitlines() if "aerie-redis" not in c]
    assert [" ".join(c.split()[:2]) for c in calls if c.startswith(("push", "update-user"))] == [
        "update-user-provided-service aerie-secrets-tenants",
        "push aerie-tenants",
        "update-user-provided-service aerie-secrets-monitor",
        "push aerie-monitor",
    ]
    (monitor_push,) = [c for c in calls if c.startswith("push aerie-monitor")]
    assert f" -f {stage}/monitor/manifest.yml -p {stage}/monitor " in monitor_push
    assert json.loads((tmp_path / "aerie-secrets-monitor.json").read_text()) == {
        "AERIE_BOOTSTRAP_CLIENT_ID": made["bootstrap_client_id"],
        "AERIE_BOOTSTRAP_CLIENT_SECRET": made["bootstrap_client_secret"],
    }
