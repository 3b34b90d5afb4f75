"""Beyond one machine: the durable queue run by Ray workers (no Qt).

- `connect.py` — reaching a cluster (`local`, `gpus`, an address), a local cluster for trying it,
  the studio's worker actors on it, `status()`;
- `worker.py` — `StudioWorker`, the actor: an `Engine` and its model cache, a job at a time, its
  previews streamed back (a Ray streaming generator), cancel within a step;
- `remote.py` — `RemoteEngine`: a worker behind `Engine.generate`'s signature, so the queue's
  `QueueRunner` (and the window) run jobs on it and save the results here;
- `files.py` — a request's files by SHA-256: found in a worker's library or sent once and kept;
- `pool.py` — `ClusterQueue`: one runner per worker over the local queue; a worker lost mid-job
  gives its job back, a lost cluster leaves the queue intact.

Ray is an optional extra (`pip install 'studio[cluster]'`); nothing here is imported unless asked.
"""
