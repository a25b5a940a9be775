"""Several serving processes behind one address (``DENDRITE_WORKERS`` > 1).

Python serves one request at a time per process; workers spread the HTTP and gRPC work over the
cores. The supervisor (``supervisor``, the process started by ``dendrite serve``) reserves the REST
and gRPC ports and spawns the workers; each worker (``worker``) binds the same ports with
SO_REUSEPORT (the kernel spreads new connections over them) and runs the ordinary server
(``app.server.serve``) with its own sessions and batchers. What keeps them one server:

- metrics: ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder) makes ``/metrics`` of any worker the merged
  view (``app.metrics``); the supervisor drops a dead worker's live gauges;
- repository load/unload: the worker that receives one passes it to the supervisor, which sends it to
  every worker in one order; each applies them in that order, and the caller is answered once all
  have. The supervisor keeps the last operation per model (unless it failed in the worker that
  asked) and replays them on a restarted worker.
  (Poll mode: every worker polls the same folder.)
- readiness: a board of one flag per worker in shared memory; a worker reports ready only when
  every flag is set;
- shutdown: SIGTERM/SIGINT to the supervisor goes to every worker, each runs the usual graceful
  sequence (``app.server.GracefulServer``), and the supervisor exits when all have;
- a worker that dies is logged and restarted with backoff; the requests it held are lost, no others.

Messages on each worker's pipe (tuples): worker -> supervisor ``("ready", bool)``,
``("control", id, op, model)``, ``("done", id, ok)``; supervisor -> worker ``("apply", id, op, model)``,
``("applied", id)`` (to the worker that asked, once every worker is done) and ``("readiness",)``
(the board changed).
"""
