"""AI Platform Training (``ml`` v1): the seed's built-in image object detection job.

Google shut the service down on 2025-01-31; the backend stays, opt-in, for endpoints that still
serve ml v1 (``--api-endpoint`` or ``CLOUDSDK_API_ENDPOINT_OVERRIDES_ML``).
"""
from launcher.cloud import google_api
from launcher.errors import LauncherError, UsageError
from launcher.jobs import jobspec, training

SHUT_DOWN = ("AI Platform Training (ml v1) was shut down on 2025-01-31: train on Vertex AI with "
             "--backend vertex")


def console_url(project, job_id):
    return "https://console.cloud.google.com/ai-platform/jobs/%s?project=%s" % (job_id, project)


class MlBackend(training.Backend):
    name = "ml"

    def __init__(self, project, region="us-central1", api_endpoint=None, logging_endpoint=None):
        super().__init__(project, region, api_endpoint, logging_endpoint)
        self._api = None

    @property
    def api(self):
        if self._api is None:
            self._api = google_api.build("ml", "v1", google_api.endpoint("ml", self.api_endpoint)).projects().jobs()
        return self._api

    def _name(self, job_id):
        return "projects/%s/jobs/%s" % (self.project, job_id)

    def plan(self, request, dry_run=False):
        for given, flag in ((request.params_overrides, "--params-override"), (request.replicas != 1, "--replicas"),
                            (request.gpus != 1, "--gpus"), (request.worker_pool_spec_file, "--worker-pool-spec-file"),
                            (request.service_account, "--service-account"), (request.network, "--network"),
                            (request.tensorboard, "--tensorboard"), (request.enable_web_access, "--enable-web-access"),
                            (request.timeout, "--timeout"), (request.init_checkpoint, "--init-checkpoint"),
                            (request.init_from, "--init-from"), (request.step_time_from, "--step-time-from"),
                            (request.train_split, "--train-split"), (request.eval_split, "--eval-split"),
                            (request.capacity != training.Capacity(), "--spot, --flex-start, --reservation, the disk "
                                                                      "and key flags")):
            if given:
                raise UsageError("%s is for --backend vertex; the built-in algorithm (ml) takes --arg name=value "
                                 "and --config" % flag)
        if request.accelerator not in ("", "tpu", "gpu"):
            raise UsageError("--accelerator %s is for --backend vertex; ml takes tpu or gpu" % request.accelerator)
        facts = training.dataset_facts(request, self.project)
        hyperparameters = dict(jobspec.HYPERPARAMETERS)
        hyperparameters["num_eval_images"] = jobspec.default_eval_images(facts)
        hyperparameters.update({k: v for k, v in request.hyperparameters.items() if v not in (None, "")})
        args = jobspec.algorithm_args(facts, hyperparameters, request.extra_args)
        jobspec.check(request.job_id, request.job_dir, args, facts)
        if request.config_path:
            try:
                with open(request.config_path) as f:
                    machines = jobspec.machines_from_config(f.read(), request.config_path)
            except OSError as error:
                raise UsageError("cannot read --config %s: %s" % (request.config_path, error.strerror))
        else:
            machines = jobspec.MACHINES[request.accelerator or "tpu"]
        body = jobspec.job_body(request.job_id, self.region, request.job_dir.rstrip("/"), machines, args,
                                labels=request.labels or None)
        config_name = request.config_path or "config.yaml"
        return training.Plan(request, body, jobspec.gcloud_command(body, config_name), config_name,
                             "" if request.config_path else jobspec.config_yaml(body),
                             "POST projects/%s/jobs" % self.project)

    def submit(self, plan):
        """Submit; the job id is ours, so a retried create answers 409 and finds the same job."""
        self.check_job_dir(plan.request)
        body = plan.body
        request = self.api.create(parent="projects/%s" % self.project, body=body)
        try:
            return training.Submission(self._job(google_api.execute(request, "submitting job %s" % body["jobId"])),
                                       True)
        except google_api.Conflict:
            pass   # already there: ours, if a retried submission had gone through, or someone else's
        except LauncherError as error:
            raise LauncherError("%s. %s" % (error, SHUT_DOWN), error.exit_code)
        existing = google_api.execute(self.api.get(name=self._name(body["jobId"])), "reading job %s" % body["jobId"])
        if existing.get("trainingInput") == body["trainingInput"]:
            return training.Submission(self._job(existing), False)
        raise UsageError("job %s already exists in project %s with another spec; pass another --job-id"
                         % (body["jobId"], self.project))

    def gcloud_follow(self, job):
        return ["gcloud ai-platform jobs %s %s --project %s" % (verb, job.id, self.project)
                for verb in ("describe", "stream-logs")]

    def log_id(self, job):
        return job

    def get(self, job):
        return self._job(google_api.execute(self.api.get(name=self._name(job)), "reading job %s" % job))

    def cancel(self, job):
        google_api.execute(self.api.cancel(name=self._name(job), body={}), "cancelling job %s" % job)

    def list(self, limit=20):
        jobs = google_api.pages(lambda **page: self.api.list(parent="projects/%s" % self.project, **page), "jobs",
                                "listing jobs")     # every page: the API documents no order
        return [self._job(j) for j in sorted(jobs, key=lambda j: j.get("createTime", ""), reverse=True)[:limit]]

    def _job(self, raw):
        job_id = raw.get("jobId", "")
        return training.Job(id=job_id, name=job_id, state=raw.get("state", "QUEUED"), error=raw.get("errorMessage", ""),
                            create_time=raw.get("createTime", ""), start_time=raw.get("startTime", ""),
                            end_time=raw.get("endTime", ""), console_url=console_url(self.project, job_id),
                            log_id=job_id, raw=raw)
