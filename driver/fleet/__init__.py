"""Fleet mode: a durable RabbitMQ job queue between the people asking and the boxes working.

    comfy-avatar submit    ->  broker (durable priority queue)  ->  comfy-avatar worker (one per ComfyUI box)
    comfy-avatar serve     ->  the same queue, over HTTP; job page; websocket of a job's events
    status --follow / cancel / list --dead   from any machine that reaches the broker and the job database

Layers inside the fleet, top to bottom (each imports only below it, and only the driver's
lower layers: errors, events, results, store, client, inputs, params, convert, manifest,
workflow; never cli/ and never comfy_avatar_nodes):

    api, page              FastAPI app for ``serve``; the job page it serves
    worker                 consumes jobs, runs them on its ComfyUI, acks when stored + final
    follow, control        progress from the events exchange; cancel requests
    jobrun                 one job on one ComfyUI: adopt from /history or run, store outputs
    broker, leases,        pika connections, topology, confirmed publishing; job leases in the
    storage, metrics       job database; input/output files (shared folder, S3 via rclone); Prometheus
    messages, settings,    the wire format (pure); typed settings; upload checks and rate limit (pure)
    uploads

Why pika (not aio-pika): the driver is threaded, not asyncio (ComfyClient, the batch runner,
SQLAlchemy sessions), and pika's BlockingConnection gives exactly the two things the worker
needs: a connection thread that sends heartbeats while jobs run in other threads, and
``add_callback_threadsafe`` to hand acks back to that thread (pika's documented pattern).
"""
