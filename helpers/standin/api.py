"""The workspace's REST APIs the course calls on Databricks, as far as it calls them, backed by real work:

| API | what the stand-in does |
|---|---|
| Jobs 2.2: create, reset, update, list, get, delete, run-now, runs/get, runs/get-output, runs/list | runs a job's notebook task with papermill, in the compute's environment, one run at a time, as a job's task would |
| model update triggers (`trigger.model`, MODEL_VERSION_READY) | polls the registry every few seconds and starts a run when a version newer than the job is READY |
| Model Serving: serving-endpoints create, get, delete, invocations | one `mlflow models serve` of the served entity's version per endpoint; invocations are passed to it |

Every request is recorded in requests.jsonl of the run's folder (method, path, body, status), so a test can check what
databricks-sdk and MLflow's `databricks` deployments client sent. Anything else gets the 404 a workspace gives for an
unknown endpoint. What it cannot have: permissions, quotas, the trigger's batching and its job parameters, schedules
that fire (09's is created paused), serverless cold starts.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

PARAMETER = re.compile(r"\{\{job\.parameters\.([A-Za-z0-9_]+)\}\}")
TRIGGER_POLL_SECONDS = 3  # Databricks polls about once a minute; the stand-in need not make the lesson wait


def now_ms() -> int:
    return int(time.time() * 1000)


class WorkspaceApi:
    def __init__(self, folder: Path, python: Path, env: dict[str, str], port: int = 0):
        self.folder, self.python, self.env = folder, python, env
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[int, dict] = {}
        self.runs: dict[int, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.task_outputs: dict[int, dict] = {}
        self.created_endpoints: list[str] = []
        self.last_run_id = 0
        self.lock = threading.RLock()
        self.run_lock = threading.Lock()  # one job run at a time: two cores, and one Spark Connect server
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # ---- life cycle
    def start(self) -> "WorkspaceApi":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self.watch_models, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        with self.lock:
            for endpoint in self.endpoints.values():
                self.stop_process(endpoint.get("process"))
            for run in self.runs.values():
                self.stop_process(run.get("process"))

    @staticmethod
    def stop_process(process) -> None:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    def history(self) -> dict:
        """What ran: each job run (its job's name, trigger, result and error) and each endpoint ever created."""
        with self.lock:
            names = {job_id: job["settings"].get("name", "") for job_id, job in self.jobs.items()}
            runs = [{"job": names.get(run["job_id"], run["run_name"]), "trigger": run["trigger"],
                     "result": run["state"].get("result_state", run["state"]["life_cycle_state"]),
                     "error": next((self.task_outputs.get(task["run_id"], {}).get("error")
                                    for task in run.get("tasks", [])), None)}
                    for run in self.runs.values()]
        return {"job_runs": runs, "endpoints": self.created_endpoints}

    def record(self, method: str, path: str, body, status: int) -> None:
        with self.lock, (self.folder / "requests.jsonl").open("a") as log:
            log.write(json.dumps({"method": method, "path": path, "body": body, "status": status}) + "\n")

    # ---- HTTP
    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the requests log says it all
                pass

            def answer(self, method: str):
                url = urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = raw.decode(errors="replace")
                status, reply, content_type = api.route(method, url.path, body if body else query, raw,
                                                        self.headers.get("Content-Type", "application/json"))
                api.record(method, self.path, body if body else query, status)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.answer("GET")

            def do_POST(self):
                self.answer("POST")

            def do_DELETE(self):
                self.answer("DELETE")

        return Handler

    def route(self, method: str, path: str, body, raw: bytes, content_type: str):
        if path == "/.well-known/databricks-config":  # databricks-sdk's discovery probe, sent by WorkspaceClient()
            return 200, {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": "1207000000000000"}, "application/json"
        jobs_call = re.fullmatch(r"/api/2\.[12]/jobs/(.+)", path)
        if jobs_call:
            return (*self.jobs_api(method, jobs_call[1], body), "application/json")
        serving = re.fullmatch(r"/api/2\.0/serving-endpoints/?([^/]*)", path)
        if serving:
            return (*self.serving_api(method, serving[1], body), "application/json")
        invocation = re.fullmatch(r"/+serving-endpoints/([^/]+)/invocations", path)
        if invocation and method == "POST":
            return self.invoke(invocation[1], raw, content_type)
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for '{method} {path}'"}, \
            "application/json"

    # ---- Jobs
    def jobs_api(self, method: str, call: str, body: dict):
        with self.lock:
            if call == "create" and method == "POST":
                job_id = len(self.jobs) + 1
                self.jobs[job_id] = {"job_id": job_id, "settings": body, "created_time": now_ms(),
                                     "seen_versions": self.model_versions(body)}
                return 200, {"job_id": job_id}
            if call in ("reset", "update") and method == "POST":
                job = self.jobs.get(int(body.get("job_id", 0)))
                if job is None:
                    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Job {body.get('job_id')} does not exist."}
                settings = body.get("new_settings") or {}
                job["settings"] = settings if call == "reset" else {**job["settings"], **settings}
                job["seen_versions"] = self.model_versions(job["settings"])
                return 200, {}
            if call == "list":
                found = [self.public_job(job) for job in self.jobs.values()
                         if not body.get("name") or job["settings"].get("name") == body["name"]]
                return 200, {"jobs": found, "has_more": False}
            if call == "get":
                job = self.jobs.get(int(body.get("job_id", 0)))
                return (200, self.public_job(job)) if job else \
                    (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Job {body.get('job_id')} does not exist."})
            if call == "delete" and method == "POST":
                self.jobs.pop(int(body.get("job_id", 0)), None)
                return 200, {}
            if call == "run-now" and method == "POST":
                job = self.jobs.get(int(body.get("job_id", 0)))
                if job is None:
                    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Job {body.get('job_id')} does not exist."}
                run = self.start_run(job, "ONE_TIME", body.get("job_parameters") or {})
                return 200, {"run_id": run["run_id"], "number_in_job": run["run_id"]}
            if call == "runs/get":
                run = self.runs.get(int(body.get("run_id", 0)))
                return (200, self.public_run(run)) if run else \
                    (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Run {body.get('run_id')} does not exist."})
            if call == "runs/get-output":
                output = self.task_outputs.get(int(body.get("run_id", 0)))
                return (200, output) if output is not None else \
                    (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Run {body.get('run_id')} is not a task run."})
            if call == "runs/list":
                found = [self.public_run(run) for run in self.runs.values()
                         if str(run["job_id"]) == str(body.get("job_id", run["job_id"]))
                         and run["start_time"] >= int(body.get("start_time_from", 0))]
                return 200, {"runs": sorted(found, key=lambda run: -run["start_time"]), "has_more": False}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for '{method} jobs/{call}'"}

    @staticmethod
    def public_job(job: dict) -> dict:
        return {"job_id": job["job_id"], "settings": job["settings"], "created_time": job["created_time"]}

    @staticmethod
    def public_run(run: dict) -> dict:
        return {key: value for key, value in run.items() if key != "process"}

    def start_run(self, job: dict, trigger: str, job_parameters: dict) -> dict:
        parameters = {item["name"]: item["default"] for item in job["settings"].get("parameters", [])}
        parameters.update(job_parameters)
        run = {"run_id": self.new_run_id(), "job_id": job["job_id"], "trigger": trigger, "start_time": now_ms(),
               "end_time": 0, "job_parameters": [{"name": k, "value": v} for k, v in parameters.items()],
               "state": {"life_cycle_state": "PENDING", "state_message": ""},
               "run_name": job["settings"].get("name", "")}
        self.runs[run["run_id"]] = run
        threading.Thread(target=self.execute, args=(run, job["settings"], parameters), daemon=True).start()
        return run

    def execute(self, run: dict, settings: dict, parameters: dict) -> None:
        with self.run_lock:
            run["state"] = {"life_cycle_state": "RUNNING", "state_message": ""}
            failure = None
            for task in settings.get("tasks", []):
                with self.lock:  # a task run has an id of its own, from the same sequence as runs
                    task_run = {"task_key": task.get("task_key", "task"), "run_id": self.new_run_id(),
                                "state": {"life_cycle_state": "RUNNING"}}
                    self.task_outputs[task_run["run_id"]] = {}
                run.setdefault("tasks", []).append(task_run)
                failure = self.run_task(run, task, parameters)
                task_run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "FAILED" if failure else "SUCCESS"}
                self.task_outputs[task_run["run_id"]] = {"error": failure} if failure else {}
                if failure:
                    break
            run["end_time"] = now_ms()
            run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "FAILED" if failure else "SUCCESS",
                            # as a workspace says it; the task's error is in its run output (runs/get-output)
                            "state_message": "Workload failed, see run output for details" if failure else ""}

    def new_run_id(self) -> int:
        self.last_run_id += 1
        return self.last_run_id

    def run_task(self, run: dict, task: dict, parameters: dict) -> str | None:
        """Runs one notebook task; returns its error in one line, or None."""
        notebook = task.get("notebook_task") or {}
        source = Path(notebook.get("notebook_path", "") + ".ipynb")
        if not source.is_file():
            return f"the stand-in runs notebook tasks only; {notebook.get('notebook_path')!r} is not a notebook here"
        values = {name: PARAMETER.sub(lambda found: str(parameters.get(found[1], "")), str(value))
                  for name, value in (notebook.get("base_parameters") or {}).items()}
        widgets = {name: values.pop(name) for name in ("catalog", "schema", "volume") if name in values}
        env = dict(self.env)
        if len(widgets) == 3:  # as the task's widgets would: the set-up cell uses them
            env.update(COURSE_UC_VOLUME=".".join(widgets[name] for name in ("catalog", "schema", "volume")),
                       COURSE_UC_VOLUME_FROM_WIDGETS="1")
        executed = self.folder / "runs" / f"run-{run['run_id']}-{task.get('task_key', 'task')}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        command = [str(self.python), "-m", "papermill", str(source), str(executed), "--cwd", str(source.parent),
                   "--no-progress-bar", "--kernel", "python3", *[item for name, value in values.items() for item in ("-r", name, value)]]
        with (self.folder / "runs" / f"run-{run['run_id']}.log").open("w") as log:
            run["process"] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            code = run["process"].wait()
        if code == 0:
            return None
        return error_line(executed) or f"the task's notebook ended with exit code {code}"

    # ---- model update triggers
    def model_versions(self, settings: dict) -> set[str]:
        model = ((settings.get("trigger") or {}).get("model") or {}).get("securable_name")
        if not model:
            return set()
        try:
            from mlflow import MlflowClient

            found = MlflowClient(registry_uri=self.env.get("MLFLOW_REGISTRY_URI")).search_model_versions(
                f"name = '{model}'")
            return {str(version.version) for version in found if version.status == "READY"}
        except Exception:  # no such model yet: every version will be new
            return set()

    def watch_models(self) -> None:
        while not self.stopping.wait(TRIGGER_POLL_SECONDS):
            with self.lock:
                watched = [job for job in self.jobs.values()
                           if ((job["settings"].get("trigger") or {}).get("model") or {}).get("condition")
                           == "MODEL_VERSION_READY"
                           and (job["settings"]["trigger"].get("pause_status") or "UNPAUSED") == "UNPAUSED"]
            for job in watched:
                versions = self.model_versions(job["settings"])
                with self.lock:
                    busy = any(run["job_id"] == job["job_id"] and run["state"]["life_cycle_state"] != "TERMINATED"
                               for run in self.runs.values())
                    if versions - job["seen_versions"] and not busy:
                        job["seen_versions"] = versions
                        self.start_run(job, "MODEL", {})

    # ---- Model Serving
    def serving_api(self, method: str, name: str, body: dict):
        with self.lock:
            if method == "POST" and not name:
                name = body.get("name", "")
                if name in self.endpoints:
                    return 409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": f"Endpoint {name} already exists."}
                entities = (body.get("config") or {}).get("served_entities") or []
                if len(entities) != 1:
                    return 400, {"error_code": "INVALID_PARAMETER_VALUE",
                                 "message": "The stand-in serves exactly one served entity per endpoint."}
                self.endpoints[name] = {"name": name, "config": body.get("config"),
                                        "process": self.serve(name, entities[0])}
                self.created_endpoints.append(name)
                return 200, self.public_endpoint(self.endpoints[name])
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Endpoint {name!r} does not exist."}
            if method == "GET":
                return 200, self.public_endpoint(endpoint)
            if method == "DELETE":
                self.stop_process(endpoint["process"])
                del self.endpoints[name]
                return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for '{method} serving-endpoints'"}

    def serve(self, name: str, entity: dict) -> subprocess.Popen:
        from helpers.serving import free_port

        port = free_port()
        command = [str(self.python), "-m", "mlflow", "models", "serve", "-m",
                   f"models:/{entity['entity_name']}/{entity['entity_version']}", "-h", "127.0.0.1", "-p", str(port),
                   "--env-manager", "local"]
        log = (self.folder / f"endpoint-{name}.log").open("w")
        env = dict(self.env, PATH=f"{self.python.parent}:{self.env.get('PATH', '')}")  # its uvicorn
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        process.url = f"http://127.0.0.1:{port}"
        return process

    @staticmethod
    def public_endpoint(endpoint: dict) -> dict:
        process = endpoint["process"]
        if process.poll() is not None:
            state = {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
        else:
            try:
                up = requests.get(process.url + "/ping", timeout=2).ok
            except requests.RequestException:
                up = False
            state = {"ready": "READY" if up else "NOT_READY", "config_update": "NOT_UPDATING" if up else "IN_PROGRESS"}
        return {"name": endpoint["name"], "config": endpoint["config"], "state": state}

    def invoke(self, name: str, raw: bytes, content_type: str):
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Endpoint {name!r} does not exist."}, \
                "application/json"
        reply = requests.post(endpoint["process"].url + "/invocations", data=raw,
                              headers={"Content-Type": content_type}, timeout=120)
        return reply.status_code, reply.content, reply.headers.get("Content-Type", "application/json")


def error_line(executed: Path) -> str | None:
    """`RuntimeError: course-cd4ml ended with exit code 1: ...`, from an executed notebook's error output."""
    if not executed.is_file():
        return None
    for cell in json.loads(executed.read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"
    return None
