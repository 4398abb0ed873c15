# cython: language_level=3
"""Compiled hot loops of the write-behind (the same code as the pure-Python fallbacks in
``writer.Backlog._add_many_py`` and ``base._change_statements_py``; tests run both on the same
journals and compare).

* :class:`Change` — one coalesced row change (``base.Change`` is this class when built);
* :func:`add_many` — validate and merge journal entries into a backlog's pending dict;
* :func:`change_statements` — group a batch into executemany statements, values as they are.

Kinds and ops are compared by value; the strings are ``base``'s (``put``/``update``/``delete``,
``insert``/``update``/``delete``).
"""

cdef str PUT = "put"
cdef str UPDATE = "update"
cdef str DELETE = "delete"
cdef str OP_INSERT = "insert"
cdef str OP_UPDATE = "update"
cdef str OP_DELETE = "delete"


cdef class Change:
    """One coalesced row change (see ``ccfast.store.base``)."""

    cdef public object table, key, kind, cols
    cdef public bint had_row

    def __init__(self, table, key, kind, cols, had_row):
        self.table = table
        self.key = key
        self.kind = kind
        self.cols = cols
        self.had_row = had_row

    def __repr__(self):
        return f"Change({self.table}, {self.key!r}, {self.kind}, {self.cols!r}, had_row={self.had_row})"


cdef inline Change _new(object table, object key, str kind, object cols, bint had_row):
    cdef Change ch = Change.__new__(Change)
    ch.table = table
    ch.key = key
    ch.kind = kind
    ch.cols = cols
    ch.had_row = had_row
    return ch


def add_many(backlog, dict pending, entries, bint check, dict info, validate):
    """Merge ``entries`` into ``pending`` (``backlog._pending``) in order; returns how many.

    ``check``: validate each entry's shape against ``info`` (table -> (key length, column
    frozenset)); a bad one is handed to ``validate`` (raises the specific ValueError). The
    backlog's ``coalesced``/``accepted`` counters are updated even when an entry raises."""
    cdef Py_ssize_t n = 0, merged = 0
    cdef object table, op, key, cols, k, entry, ti, c
    cdef frozenset colset
    cdef Change ch
    cdef bint ok
    try:
        for entry in entries:
            if type(entry) is tuple and len(<tuple>entry) == 4:
                table, op, key, cols = <tuple>entry
            else:
                try:
                    table, op, key, cols = entry
                except Exception:
                    validate(entry)
                    raise
            if check:
                ti = info.get(table)
                ok = ti is not None and type(key) is tuple and len(<tuple>key) == <Py_ssize_t>(<tuple>ti)[0]
                if ok:
                    if type(cols) is dict:
                        colset = <frozenset>(<tuple>ti)[1]
                        for c in <dict>cols:  # no keys-view object per entry
                            if c not in colset:
                                ok = False
                                break
                    else:
                        try:
                            ok = cols.keys() <= (<tuple>ti)[1]
                        except Exception:
                            ok = False
                if not ok:
                    validate(entry)
                    raise ValueError(f"malformed journal entry {entry!r}")
            k = (table, key)
            x = pending.get(k)
            if x is None:
                if op == OP_UPDATE:
                    pending[k] = _new(table, key, UPDATE, cols, True)
                elif op == OP_INSERT:
                    pending[k] = _new(table, key, PUT, cols, False)
                elif op == OP_DELETE:
                    pending[k] = _new(table, key, DELETE, {}, True)
                else:
                    validate(entry)
                    raise ValueError(f"malformed journal entry {entry!r}")
                n += 1
                continue
            ch = <Change>x
            if op == OP_UPDATE:
                if ch.kind != DELETE:  # an update after a delete touches no row
                    merged_cols = dict(ch.cols)  # a new dict: never the caller's
                    merged_cols.update(cols)
                    ch.cols = merged_cols
            elif op == OP_INSERT:
                if ch.kind != PUT:
                    ch.had_row = True  # the row existed (update) or may still exist (delete pending)
                ch.kind = PUT
                ch.cols = cols
            elif op == OP_DELETE:
                if ch.kind == PUT and not ch.had_row:
                    del pending[k]  # inserted and deleted before reaching the database
                else:
                    ch.kind = DELETE
                    ch.cols = {}
            else:
                validate(entry)
                raise ValueError(f"malformed journal entry {entry!r}")
            merged += 1
            n += 1
    finally:
        backlog.coalesced += merged
        backlog.accepted += n
    return n


def change_statements(changes, bint dollar, dict shapes, shape_fn, delete_sql):
    """``base.change_statements``: ``shapes`` caches ``shape_fn(kind, table, shape, dollar)`` ->
    (sql, plan); ``delete_sql(table)`` is the delete-by-key statement."""
    cdef dict deletes = {}
    cdef dict groups = {}
    cdef list d, args
    cdef tuple g, sp, key, shape, gk
    cdef object plan, table, kind
    cdef object cols
    cdef Change ch
    for x in changes:
        ch = <Change?>x
        kind = ch.kind
        table = ch.table
        key = <tuple?>ch.key
        if kind != UPDATE:  # PUT always clears the key first: idempotent, never a duplicate row
            d = deletes.get(table)
            if d is None:
                d = deletes[table] = []
            d.append(key)
            if kind != PUT:
                continue
        cols = ch.cols
        shape = tuple(cols)
        gk = (kind, table, shape)
        g = groups.get(gk)
        if g is None:
            sk = (kind, table, shape, dollar)
            sp = shapes.get(sk)
            if sp is None:
                sp = shape_fn(kind, table, shape, dollar)
                shapes[sk] = sp
            g = (sp[0], sp[1], [])
            groups[gk] = g
        plan = g[1]
        args = <list>g[2]
        if plan is None:
            if kind == UPDATE:
                args.append(tuple(cols.values()) + key)
            else:
                args.append(tuple(cols.values()))
        elif kind == PUT:
            if plan is True:
                args.append(tuple(cols.values()) + key)
            else:
                args.append(tuple(cols.values()) + tuple([key[i] for i in plan]))
        elif plan:
            args.append(tuple([cols[c] for c in plan]) + key)
    out = []
    for table, dl in deletes.items():
        out.append((delete_sql(table), dl))
    for gk, g in groups.items():
        if gk[0] == PUT and g[2]:
            out.append((g[0], g[2]))
    for gk, g in groups.items():
        if gk[0] == UPDATE and g[2]:
            out.append((g[0], g[2]))
    return out
