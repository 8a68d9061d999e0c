"""Examples for each command, by its words after `spane`: the EXAMPLES section of its man
page (scripts/generate.py). Every command has some (tests/test_generated.py)."""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        ("Run an example workflow here, with nothing to start.",
         "spane run --local workflows/etl.yaml"),
        ("Any global option may follow the command.", "spane get 3f2a -o json"),
    ],
    "validate": [
        ("Check every workflow file; each problem as FILE:LINE:COL.",
         "spane validate workflows/*.yaml"),
    ],
    "graph": [("Draw the DAG as Mermaid, for a README.",
               "spane graph flow.yaml --format mermaid")],
    "run": [
        ("Submit to the workers; prints the execution id.",
         "spane run flow.yaml -i date=2026-12-01"),
        ("From cron: wait, say why on failure, exit with the outcome.",
         "spane -q run --wait --timeout 2h --idempotency-key nightly-$(date +%F) etl.yaml"),
        ("Everything in this process, no servers.", "spane run --local --watch flow.yaml"),
    ],
    "worker": [
        ("Five processes on two queues.", "spane worker --concurrency 5 -Q default -Q gpu"),
        ("Drain what is queued, then exit.", "spane worker --burst"),
        ("Log one JSON object a line for a log shipper.", "spane worker --log-format json"),
    ],
    "get": [
        ("One execution, by a prefix of its id.", "spane get 3f2a9c"),
        ("Types, durations and items of each node.", "spane get 3f2a9c -o wide"),
        ("The output of one node, for a script.",
         "spane get 3f2a9c -o json | jq .nodes.extract.output"),
    ],
    "list": [
        ("The failures of the last day.", "spane list --status failed --since 1d"),
        ("Bare ids, to feed another command.",
         "spane list -o name --status failed | xargs -n1 spane retry"),
    ],
    "watch": [
        ("Follow one execution until it ends; exits with its outcome.", "spane watch 3f2a9c"),
        ("Every active execution.", "spane watch"),
    ],
    "events": [
        ("The history, then live until the end, as NDJSON.",
         "spane events 3f2a9c --follow -o json"),
    ],
    "logs": [
        ("What one node printed.", "spane logs 3f2a9c --node extract"),
        ("Lines as they are written, until the execution ends.", "spane logs 3f2a9c -f"),
    ],
    "cancel": [("Stop an execution; its running commands are killed.", "spane cancel 3f2a9c")],
    "pause": [("Start no new node; running ones finish.", "spane pause 3f2a9c")],
    "resume": [("Go on with a paused execution.", "spane resume 3f2a9c")],
    "retry": [("Run the failed nodes again, keeping what succeeded.", "spane retry 3f2a9c")],
    "resubmit": [
        ("The same workflow version again, with one input changed, waiting for it.",
         "spane resubmit 3f2a9c -i date=2026-12-02 --wait"),
    ],
    "health": [
        ("Exit 0 only when Redis, the database and a worker per queue are there.",
         "spane health || alert 'spane is degraded'"),
        ("For a monitoring probe.", "spane health -o json"),
    ],
    "gc": [
        ("What would go.", "spane gc --older-than 30d --dry-run"),
        ("Delete the successes of one workflow older than a week.",
         "spane gc --older-than 7d --status succeeded --workflow etl"),
    ],
    "bench": [("Measure this machine against raw RQ.", "spane bench")],
    "dlq": [("Nodes that failed for good, then replay them all.",
             "spane dlq list && spane dlq replay --all")],
    "dlq list": [("Bare dead letter ids.", "spane dlq list -o name")],
    "dlq show": [("Error, input and the tail of the logs of one.", "spane dlq show 12")],
    "dlq replay": [
        ("Replay two of them.", "spane dlq replay 12 13"),
        ("Every one of a workflow, once its cause is fixed.", "spane dlq replay --workflow etl"),
    ],
    "dlq purge": [("Forget them (the executions stay).", "spane dlq purge --all")],
    "pool": [("Four slots for the nodes with `pool: warehouse`.", "spane pool set warehouse 4")],
    "pool list": [("Who holds each pool, and how many wait.", "spane pool list")],
    "pool set": [("Two slots, whatever the workflow files declare.",
                  "spane pool set warehouse 2")],
    "pool rm": [("Back to the size the files declare.", "spane pool rm warehouse")],
    "breaker": [("Which hosts' breakers are open.", "spane breaker list --open")],
    "breaker list": [("Every breaker, as JSON.", "spane breaker list -o json")],
    "breaker reset": [("Close the breaker of a host that is known to be back.",
                       "spane breaker reset api.example.com")],
    "hook": [("Let a deploy pipeline start `deploy` runs.", "spane hook create deploy")],
    "hook create": [
        ("Print the URL (behind the proxy's address) and the secret, once.",
         "spane hook create deploy --url https://spane.example.com"),
        ("Sign a body as a sender does, and send it.",
         "curl -H \"X-Hub-Signature-256: sha256=$(printf %s \"$BODY\" | openssl dgst -sha256"
         " -hmac \"$SECRET\" -r | cut -d' ' -f1)\" -H 'X-Spane-Delivery: 1' -d \"$BODY\""
         " http://127.0.0.1:8080/v1/hooks/deploy"),
    ],
    "hook list": [("Which workflows have hooks, and their last delivery.", "spane hook list")],
    "hook rm": [("Refuse its requests from now on.", "spane hook rm deploy")],
    "schedule": [("Install the schedules a file declares.", "spane schedule apply etl.yaml")],
    "schedule add": [
        ("Nightly at 02:30 Berlin time, instead of a cron line.",
         "spane schedule add nightly etl.yaml --cron '30 2 * * *' --tz Europe/Berlin"),
        ("Every 5 minutes, never two at once.",
         "spane schedule add poll poll.yaml --every 5m --overlap forbid"),
    ],
    "schedule apply": [("Create or update every schedule of a file.",
                        "spane schedule apply etl.yaml")],
    "schedule list": [("Every schedule, with its next fire time.", "spane schedule list")],
    "schedule get": [("Its last fires and what was done with each.",
                      "spane schedule get nightly")],
    "schedule next": [("The next fire times across a DST change.",
                       "spane schedule next nightly -n 10")],
    "schedule pause": [("Stop firing during a maintenance window.",
                        "spane schedule pause nightly")],
    "schedule resume": [("Fire again from the next fire time on.",
                         "spane schedule resume nightly")],
    "schedule rm": [("Remove it; its executions stay.", "spane schedule rm nightly")],
    "schedule run": [("Fire now, out of turn.", "spane schedule run nightly")],
    "schedule backfill": [
        ("Every fire time of one day, three at a time.",
         "spane schedule backfill hourly --from 2026-11-30T00:00Z --to 2026-11-30T23:00Z"
         " --max-parallel 3"),
    ],
    "db": [("Is the schema up to date?", "spane db status")],
    "db migrate": [("Before starting upgraded workers.", "spane db migrate")],
    "db status": [("In a deploy script: migrate only when needed.",
                   "spane db status || spane db migrate")],
}  # fmt: skip
