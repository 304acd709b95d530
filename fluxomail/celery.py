"""The Celery application: configured from Django's settings (the CELERY_* names).

Run a worker with `celery -A fluxomail worker` and the scheduler with `celery -A fluxomail beat`
(`make run` starts both beside the web server). Every message carries the request id of the
request that published it, and the worker's log lines for that task carry it too.
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxomail.settings")

# `filesystem://` (make run's broker) writes each message whole: see fluxomail/filebroker.py.
TRANSPORT_ALIASES["filesystem"] = "fluxomail.filebroker:Transport"

app = Celery("fluxomail")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REQUEST_ID_HEADER = "fluxomail_request_id"


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs) -> None:
    # kombu's filesystem transport expects its folders to exist.
    for name in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = (sender.conf.broker_transport_options or {}).get(name)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


@before_task_publish.connect
def _carry_request_id(headers=None, **kwargs) -> None:
    from fluxomail.middleware import current_request_id

    if headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, current_request_id())


def request_id_of(task) -> str:
    request = task.request
    value = getattr(request, REQUEST_ID_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    return value or "-"


@task_prerun.connect
def _adopt_request_id(task=None, **kwargs) -> None:
    from fluxomail.middleware import set_request_id

    set_request_id(request_id_of(task))


@task_postrun.connect
def _drop_request_id(**kwargs) -> None:
    from fluxomail.middleware import set_request_id

    set_request_id("-")
