"""TenantWriter: the one owner of every write to a tenant.

Every change to a tenant's index state goes through ``with TenantWriter(store,
tenant) as w:``, which holds the tenant's writer lock (an flock on
``<tenant>/lock``) from enter to exit:

=========================  ==================================================
write                      how
=========================  ==================================================
reindex, migrate           ``ragindex.indexing.run.TenantRun`` opens one writer
                           for the whole run (first write to the end)
rollback                   :meth:`TenantWriter.rollback`
gc, compact                :meth:`TenantWriter.gc`, :meth:`TenantWriter.compact`
verify --repair            ``indexing.repair.verify`` inside a writer
settings (tenants add)     :meth:`TenantWriter.save_settings`
tenants remove             :meth:`TenantWriter.retire` (``store.offboard``)
=========================  ==================================================

This is the only module that takes a tenant's locks, and the functions that
write index state (``promote``, ``gc``, ``save_settings``) refuse to run unless
the lock is held (:func:`ragindex.store.locking.require_held`).

**The pin.** A tenant's chunker schema and search mode are those of its live
generation (``TenantStore.settings`` reads them from the live manifest), so they
change in the same atomic step as the promotion (the CURRENT rename), whoever
promotes: a reindex, a migration, a rollback or a repair. ``tenant.json`` keeps
a copy for people and for a tenant without a generation; a writer brings it in
line on entry and after each promotion, so a crash between the two is repaired
by the next writer and never changes what the next run does.

**Keys are not index state.** API keys have their own lock (``keys.lock``,
:func:`keys_lock`): creating or revoking a key never waits behind a reindex
holding the writer lock for an hour, and a reindex never waits for a key.
"""

from __future__ import annotations

import contextlib

from ragindex.arguments import seconds
from ragindex.store.generations import gc as _gc
from ragindex.store.generations import rollback as _rollback
from ragindex.store.locking import probe_lock, tenant_lock
from ragindex.store.maintenance import Maintenance, check_settings, keep_generations, maintain
from ragindex.store.maintenance import compact as _compact
from ragindex.store.manifests import current_id
from ragindex.store.paths import TenantPaths
from ragindex.store.tenants import TenantSettings, TenantStore

__all__ = ["TenantWriter", "keys_lock", "probe_writer"]


class TenantWriter:
    """The writer lock of one tenant, held from ``__enter__`` to ``__exit__``, and the writes that need it.

    ``wait``: seconds to queue behind another writer before TenantBusy (a finite number >= 0,
    else ArgumentError: NaN or infinity would block for ever). ``create``:
    make the tenant's directories if it has none (a first reindex); otherwise a
    missing tenant is a TenantError.
    """

    def __init__(self, store: TenantStore, tenant: str, *, wait: float = 0.0, create: bool = False) -> None:
        self.store, self.tenant = store, tenant
        self.paths: TenantPaths = store.paths(tenant)  # validates the name
        self.wait, self.create = seconds(wait), create  # a NaN wait would never reach its deadline
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "TenantWriter":
        check_settings(self.store, self.tenant)  # an invalid RAGINDEX_* setting fails here, before anything is written
        self.paths = self.store.create(self.tenant) if self.create else self.store.require(self.tenant)
        with contextlib.ExitStack() as stack:
            stack.enter_context(tenant_lock(self.paths.lock, wait=self.wait))
            self.reconcile()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    # -- settings and the pin ---------------------------------------------------

    @property
    def settings(self) -> TenantSettings:
        return self.store.settings(self.tenant)

    def save_settings(self, settings: TenantSettings) -> None:
        self.store.save_settings(self.tenant, settings)

    def reconcile(self) -> bool:
        """Write the live generation's schema and mode into ``tenant.json`` if it lags; True if it did.

        It lags only after a crash between a promotion and this write; what runs
        read (``TenantStore.settings``, the one definition of the pin) was already the live pin.
        """
        pinned, stored = self.store.settings(self.tenant), self.store.stored_settings(self.tenant)
        if pinned == stored:
            return False  # in line, no generation yet, or a damaged CURRENT (verify --repair first)
        self.save_settings(pinned)
        return True

    # -- lifecycle ----------------------------------------------------------------

    def rollback(self, to: str | None = None) -> dict:
        """Make ``to`` (default: the generation live before the current content) live again; the pin follows."""
        before = current_id(self.paths)  # read under the lock: a queued rollback reports what it replaced
        gen = _rollback(self.paths, to)
        self.reconcile()
        settings = self.settings
        return {"tenant": self.tenant, "from": before, "to": gen, "chunker": settings.chunker, "mode": settings.mode}

    def gc(self, keep: int | None = None) -> list[str]:
        """Delete generations outside the retention window, then every file none of the rest names."""
        return _gc(self.paths, keep or keep_generations(self.store, self.tenant))

    def compact(self) -> Maintenance:
        """Merge every live segment into one without deleted rows (nothing re-embedded), then gc."""
        done = _compact(self.store, self.tenant)
        self.reconcile()
        return done

    def maintain(self) -> Maintenance:
        """The merges the policy asks for, then gc: each its own atomic step (after a run that changed something)."""
        done = maintain(self.store, self.tenant)
        self.reconcile()
        return done


def probe_writer(store: TenantStore, tenant: str, wait: float = 0.0) -> None:
    """Fail at once with TenantBusy if another process writes ``tenant`` and ``wait`` is 0 (takes nothing)."""
    probe_lock(store.paths(tenant).lock, seconds(wait))


@contextlib.contextmanager
def keys_lock(store: TenantStore, tenant: str, wait: float = 10.0):
    """The lock of a tenant's API keys (``keys.json``): separate from the writer lock, never behind a reindex."""
    paths = store.require(tenant)
    with tenant_lock(paths.root / "keys.lock", wait=wait):
        yield paths
