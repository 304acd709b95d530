"""kombu's filesystem transport (the job queue of `make run`), with each message written whole.

kombu 5.x's `filesystem` channel opens the message file under its final name and then writes
it; a worker listing the folder in between moves the empty file away, reads nothing, and dies
on "Unrecoverable error: JSONDecodeError" (the lock it takes is not one the reader asks for).
Here a message is written under a name no reader takes (`.tmp`, not `.<queue>.msg`) and then
renamed, which is atomic within one folder: a reader sees no file, or the whole message.
`fluxomail/celery.py` makes `filesystem://` mean this transport in every process.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"{uuid.uuid4()}.tmp")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.remove(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
