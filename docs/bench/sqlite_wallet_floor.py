"""The SQLite floor for a transfer, outside Plaza: per transfer only the rows any transfer
over the wallet's schema must write (its journal row, its idempotency key with a result of
a real result's size, the two balance changes), with Python's C `sqlite3` module and
prepared statements, in transactions of 1,024, WAL with `synchronous = FULL` as Plaza
runs it. No reads, no checks, no events, no checkpoints (the WAL just grows) — every one
of which Plaza needs — so no transfer path over these tables beats it on the same machine.

    python3 docs/bench/sqlite_wallet_floor.py zipf          # or uniform
    python3 docs/bench/sqlite_wallet_floor.py zipf --lean   # no foreign keys, no movement id index
    SYNC=OFF python3 docs/bench/sqlite_wallet_floor.py zipf # without the fsync per commit

It corroborates the floor `plaza-bench wallet` measures through sqlx in the same run as
the real path.
"""

import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid

workload = sys.argv[1] if len(sys.argv) > 1 else "zipf"
lean = "--lean" in sys.argv
references = "" if lean else "REFERENCES accounts (id)"
movement_key = "id TEXT NOT NULL" if lean else "id TEXT PRIMARY KEY"
transaction_index = (
    "CREATE UNIQUE INDEX movements_transaction ON movements (transaction_id, id);"
    if lean
    else "CREATE INDEX movements_transaction ON movements (transaction_id);"
)

directory = tempfile.mkdtemp()
db = sqlite3.connect(os.path.join(directory, "floor.db"), isolation_level=None)
for pragma in (
    "journal_mode = WAL",
    "synchronous = " + os.environ.get("SYNC", "FULL"),
    "foreign_keys = ON",
    "cache_size = -65536",
    "wal_autocheckpoint = 0",
    "temp_store = MEMORY",
):
    db.execute("PRAGMA " + pragma)
db.executescript(f"""
CREATE TABLE accounts (id TEXT PRIMARY KEY, owner_id TEXT, kind TEXT, currency TEXT,
    balance INTEGER NOT NULL CHECK (balance >= 0), held INTEGER NOT NULL DEFAULT 0, created_at INTEGER);
CREATE INDEX accounts_owner ON accounts (owner_id);
CREATE TABLE movements ({movement_key}, transaction_id TEXT NOT NULL, kind TEXT NOT NULL,
    debit_account TEXT NOT NULL {references}, credit_account TEXT NOT NULL {references},
    amount INTEGER NOT NULL CHECK (amount > 0), currency TEXT NOT NULL, reference TEXT NOT NULL,
    note TEXT, created_at INTEGER NOT NULL, CHECK (debit_account <> credit_account));
CREATE INDEX movements_debit ON movements (debit_account, created_at);
CREATE INDEX movements_credit ON movements (credit_account, created_at);
{transaction_index}
CREATE TABLE idempotency (scope TEXT NOT NULL, idempotency_key TEXT NOT NULL, operation TEXT NOT NULL,
    request_hash TEXT NOT NULL, result TEXT, created_at INTEGER NOT NULL, PRIMARY KEY (scope, idempotency_key));
CREATE INDEX idempotency_created ON idempotency (created_at);
""")

users = [uuid.uuid4().hex[:26].upper() for _ in range(10_000)]
hot = users[:100]
weights = [1 / rank**1.1 for rank in range(1, 101)]
db.execute("BEGIN")
db.executemany(
    "INSERT INTO accounts VALUES (?, ?, 'user', 'USD', ?, 0, 0)", [(f"user:{u}:USD", u, 10**9) for u in users]
)
db.execute("COMMIT")


def pair():
    while True:
        a, b = random.sample(users, 2) if workload == "uniform" else random.choices(hot, weights, k=2)
        if a != b:
            return a, b


TRANSFERS, BATCH = 100_000, 1024
in_database, done, now = 0.0, 0, int(time.time() * 1000)
while done < TRANSFERS:
    movements, keys, changes = [], [], {}
    for n in range(BATCH):
        a, b = pair()
        transfer = f"{now:013X}{done + n:013X}"
        movements.append((f"{now:013X}{random.getrandbits(52):013X}", transfer, "transfer", f"user:{a}:USD",
                          f"user:{b}:USD", 5, "USD", "transfer:" + transfer, None, now))
        result = (f'{{"id":"{transfer}","from_user_id":"{a}","to_user_id":"{b}","amount":5,"currency":"USD",'
                  f'"note":null,"conversation_id":null,"message_id":null,"created_at_ms":{now}}}')
        keys.append((a, str(uuid.uuid4()), "transfer", f"{random.getrandbits(256):064x}", result, now))
        changes[f"user:{a}:USD"] = changes.get(f"user:{a}:USD", 0) - 5
        changes[f"user:{b}:USD"] = changes.get(f"user:{b}:USD", 0) + 5
    started = time.time()
    db.execute("BEGIN")
    db.executemany("UPDATE accounts SET balance = balance + ? WHERE id = ?", [(d, i) for i, d in changes.items()])
    db.executemany("INSERT INTO movements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", movements)
    db.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?)", keys)
    db.execute("COMMIT")
    in_database += time.time() - started
    done += BATCH
    now += 1
print(f"{workload}{' lean' if lean else ''} synchronous={os.environ.get('SYNC', 'FULL')}: "
      f"{TRANSFERS / in_database:.0f} transfers/s in the database alone")
