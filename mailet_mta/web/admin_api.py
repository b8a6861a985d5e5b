"""The admin API's operations: the route table and a handler per route.

Every handler runs one operation of :mod:`mailet_mta.admin` — the same functions the
command line runs — on the database's threads: reads on the reader pool
(``Database.read``), changes through the writer (``Database.write``), password hashing
on the password threads. Nothing here touches SQL, a file or a hash on the reactor.
"""

from __future__ import annotations

from twisted.internet import defer, threads

from ..admin import domains, health, mappings, nodes, queue, repositories, spool, users
from ..api import ConfigurationError, parse_duration
from . import schemas as s
from .http import Call, HTTPError, Param, Response, Route, invalid
from .stream import MessageStream

NO_CONTENT = Response(204)


class AdminAPI:
    """The operations over one running server (its database, blobs, listeners)."""

    def __init__(self, server, max_page: int):
        self.server = server
        self.max_page = max_page

    @property
    def config(self):
        return self.server.config          # the configuration in force (after reloads)

    def read(self, fn, *args) -> defer.Deferred:
        return self.server.db.read(fn, self.config, *args)

    def write(self, fn, *args) -> defer.Deferred:
        return self.server.db.write(fn, self.config, *args)

    @staticmethod
    def page(items: list, call: Call, total: int | None = None) -> Response:
        """One page of ``items`` (already cut to the page when ``total`` is given)."""
        limit, offset = call.params["limit"], call.params["offset"]
        if total is None:
            total, items = len(items), items[offset:offset + limit]
        return Response(200, {"items": items, "total": total, "limit": limit,
                              "offset": offset})

    @defer.inlineCallbacks
    def paged(self, call: Call, list_fn, count_fn, *args):
        """A page read with LIMIT/OFFSET in SQL, and the total."""
        items = yield self.read(list_fn, *args, call.params["limit"], call.params["offset"])
        total = yield self.read(count_fn, *args)
        return self.page(items, call, total)

    # -- domains ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def list_domains(self, call):
        return self.page((yield self.read(domains.list_domains)), call)

    @defer.inlineCallbacks
    def add_domain(self, call):
        name = yield self.write(domains.add_domain, call.params["domain"])
        return Response(201, {"name": name})

    @defer.inlineCallbacks
    def remove_domain(self, call):
        return Response(200, (yield self.write(domains.remove_domain, call.params["domain"],
                                               bool(call.params["force"]))))

    # -- users --------------------------------------------------------------------------
    def list_users(self, call):
        return self.paged(call, users.list_users, users.count_users, call.params["domain"])

    @defer.inlineCallbacks
    def get_user(self, call):
        return Response(200, (yield self.read(users.get_user, call.params["user"])))

    @defer.inlineCallbacks
    def create_user(self, call):
        name = users.normalise(call.params["user"])
        quota = users.parse_quota(call.body.get("quota"))
        password_hash = yield hash_password(call.body["password"])
        name = yield self.write(users.create_user, name, password_hash, quota)
        return Response(201, {"name": name})

    @defer.inlineCallbacks
    def set_password(self, call):
        name = users.normalise(call.params["user"])
        password_hash = yield hash_password(call.body["password"])
        yield self.write(users.set_password, name, password_hash)
        return NO_CONTENT

    @defer.inlineCallbacks
    def set_quota(self, call):
        quota = users.parse_quota(call.body.get("quota"))
        name = yield self.write(users.set_quota, call.params["user"], quota)
        return Response(200, {"name": name, "quota": quota})

    @defer.inlineCallbacks
    def delete_user(self, call):
        yield self.write(users.delete_user, call.params["user"])
        return NO_CONTENT

    # -- mappings -----------------------------------------------------------------------
    @defer.inlineCallbacks
    def list_mappings(self, call):
        return self.page((yield self.read(mappings.list_mappings, call.params["source"])),
                         call)

    @defer.inlineCallbacks
    def add_mappings(self, call):
        return Response(201, (yield self.write(mappings.add_mappings, call.body["source"],
                                               call.body["targets"])))

    @defer.inlineCallbacks
    def remove_source(self, call):
        removed = yield self.write(mappings.remove_mappings, call.params["source"], [])
        return Response(200, {"removed": removed})

    @defer.inlineCallbacks
    def remove_mapping(self, call):
        removed = yield self.write(mappings.remove_mappings, call.params["source"],
                                   [call.params["target"]])
        return Response(200, {"removed": removed})

    # -- mail repositories --------------------------------------------------------------
    @defer.inlineCallbacks
    def list_repositories(self, call):
        return self.page((yield self.read(repositories.list_repositories)), call)

    def list_repository_mails(self, call):
        return self.paged(call, repositories.list_mails, repositories.count_mails,
                          call.params["repository"])

    @defer.inlineCallbacks
    def get_repository_mail(self, call):
        return Response(200, (yield self.read(repositories.get_mail, call.params["id"],
                                              call.params["repository"])))

    @defer.inlineCallbacks
    def download_repository_mail(self, call):
        mail, source = yield self.read(repositories.message_source, self.server.blobs,
                                       call.params["id"], call.params["repository"])
        if source is None:
            raise HTTPError(404, "Not found", f"the message of stored mail {mail['id']} "
                                              f"is missing from the blob store")
        return Response(200, stream=MessageStream(source), content_type="message/rfc822",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{mail["id"]}.eml"'})

    @defer.inlineCallbacks
    def delete_repository_mail(self, call):
        yield self.write(repositories.delete_mail, call.params["id"],
                         call.params["repository"])
        return NO_CONTENT

    @defer.inlineCallbacks
    def reprocess_repository(self, call):
        moved = yield self.write(repositories.reprocess, call.params["repository"],
                                 call.body.get("processor"), call.body.get("id"))
        return Response(200, {"moved": moved})

    @defer.inlineCallbacks
    def purge_repository(self, call):
        older = call.body.get("olderThan")
        seconds = None
        if older is not None:
            try:
                seconds = parse_duration(older, "olderThan")
            except ConfigurationError:
                raise invalid(f"olderThan {older!r} is not an age; write e.g. 30d, 12h or "
                              f"90 minutes") from None
        purged = yield self.write(repositories.purge, call.params["repository"], seconds,
                                  call.body.get("keep"))
        return Response(200, {"purged": purged})

    # -- the outgoing queue -------------------------------------------------------------
    def list_queue(self, call):
        return self.paged(call, queue.list_entries, queue.count_entries,
                          call.params["queue"], call.params["destination"])

    @defer.inlineCallbacks
    def queue_destinations(self, call):
        return self.page((yield self.read(queue.destinations)), call)

    @defer.inlineCallbacks
    def get_queue_entry(self, call):
        return Response(200, (yield self.read(queue.get_entries, call.params["id"]))[0])

    @defer.inlineCallbacks
    def retry_queue_entry(self, call):
        return Response(200, {"due": (yield self.write(queue.retry, call.params["id"]))})

    @defer.inlineCallbacks
    def delete_queue_entry(self, call):
        yield self.write(queue.delete, call.params["id"])
        return NO_CONTENT

    @defer.inlineCallbacks
    def flush_queue(self, call):
        due = yield self.write(queue.flush, call.params["queue"], call.params["destination"])
        return Response(200, {"due": due})

    # -- spool, nodes, health -----------------------------------------------------------
    @defer.inlineCallbacks
    def spool_states(self, call):
        return self.page((yield self.read(spool.states)), call)

    def list_spool(self, call):
        return self.paged(call, spool.list_mails, spool.count_mails, call.params["state"])

    @defer.inlineCallbacks
    def list_nodes(self, call):
        return self.page((yield self.read(nodes.list_nodes)), call)

    @defer.inlineCallbacks
    def healthcheck(self, call):
        checks = []
        try:
            checks.append((yield self.read(health.check_database)))
        except Exception as exc:  # noqa: BLE001 - an unreachable database is the answer
            checks.append(health.check("database", " ".join(str(exc).split())[:300]))
        checks.append((yield self.server.db.run_in_thread(health.check_blob_store,
                                                          self.server.blobs.root)))
        checks += health.check_listeners(self.server.listeners)
        report = health.report(checks)
        return Response(200 if report["status"] == "healthy" else 503, report)


def hash_password(password: str) -> defer.Deferred:
    """argon2id on the password threads the logins use."""
    from twisted.internet import reactor

    from ..storage.authenticator import _hashing_pool
    from ..storage.passwords import hash_password as argon2

    return threads.deferToThreadPool(reactor, _hashing_pool(reactor), argon2, password)


# -- the route table ------------------------------------------------------------------------
def _param(name: str, schema: dict, description: str = "") -> Param:
    return Param(name, schema, description)


def routes(api: AdminAPI) -> list[Route]:
    """Every operation of the API, in the order the OpenAPI document lists them."""
    page = [_param("limit", s.limit(api.max_page), "items per page"),
            _param("offset", s.OFFSET, "items to skip")]
    domain = [_param("domain", s.DOMAIN, "a domain name")]
    user = [_param("user", s.ADDRESS, "user@domain")]
    repo = [_param("repository", s.NAME, "repository name, e.g. error")]
    mail = [*repo, _param("id", s.ID, "the stored mail's id")]
    entry = [_param("id", s.ID, "the queue entry's id")]
    queue_filter = [_param("queue", {**s.NAME, "default": None}, "only this queue"),
                    _param("destination", {**s.DOMAIN, "default": None},
                           "only this destination domain")]

    def ok(description, schema):
        return {200: (description, schema)}

    R = Route
    return [
        R("GET", "/domains", api.list_domains, "List the local domains", "domains",
          ok("the domains table and servernames", s.page_of(s.DOMAIN_ITEM)), query=page),
        R("PUT", "/domains/{domain}", api.add_domain, "Add a local domain", "domains",
          {201: ("added", s.obj({"name": s.STRING}))}, domain),
        R("DELETE", "/domains/{domain}", api.remove_domain, "Remove a local domain",
          "domains", ok("removed", s.obj({"name": s.STRING, "still_local": s.BOOLEAN})),
          domain, [_param("force", {**s.BOOLEAN, "default": False},
                          "remove it even though users of it exist")]),
        R("GET", "/users", api.list_users, "List users with their mailbox usage", "users",
          ok("users, sorted by name", s.page_of(s.USER)),
          query=[_param("domain", {**s.DOMAIN, "default": None}, "only this domain"),
                 *page]),
        R("GET", "/users/{user}", api.get_user, "Show a user", "users",
          ok("the user", s.USER), user),
        R("PUT", "/users/{user}", api.create_user, "Create a user with a password",
          "users", {201: ("created", s.obj({"name": s.STRING}))}, user,
          body=s.body({"password": s.PASSWORD, "quota": s.QUOTA}, ("quota",))),
        R("PUT", "/users/{user}/password", api.set_password, "Change a user's password",
          "users", {204: ("changed", None)}, user, body=s.body({"password": s.PASSWORD})),
        R("PUT", "/users/{user}/quota", api.set_quota, "Set a user's quota", "users",
          ok("set", s.obj({"name": s.STRING, "quota": {"type": ["integer", "null"]}})),
          user, body=s.body({"quota": s.QUOTA})),
        R("DELETE", "/users/{user}", api.delete_user, "Delete a user and their mailboxes",
          "users", {204: ("deleted", None)}, user),
        R("GET", "/mappings", api.list_mappings, "List aliases and address mappings",
          "mappings", ok("the configured and stored mappings", s.page_of(s.MAPPING)),
          query=[_param("source", {**s.ADDRESS, "default": None}, "only this source"),
                 *page]),
        R("POST", "/mappings", api.add_mappings, "Map a source to targets", "mappings",
          {201: ("added", s.obj({"source": s.STRING, "added": s.STRINGS,
                                 "deliverable": s.BOOLEAN}))},
          body=s.body({"source": s.ADDRESS,
                       "targets": {"type": "array", "minItems": 1, "maxItems": 100,
                                   "items": {"type": "string", "minLength": 1,
                                             "maxLength": 1024}}})),
        R("DELETE", "/mappings/{source}", api.remove_source, "Remove every mapping of a "
          "source", "mappings", ok("removed", s.obj({"removed": {"type": "array"}})),
          [_param("source", s.ADDRESS, "user@domain, *@domain or domain")]),
        R("DELETE", "/mappings/{source}/targets/{target}", api.remove_mapping,
          "Remove one mapping", "mappings", ok("removed", s.obj({"removed":
                                                                   {"type": "array"}})),
          [_param("source", s.ADDRESS), _param("target", {**s.ADDRESS, "maxLength": 1024},
                                               "the target, percent-encoded")]),
        R("GET", "/mailRepositories", api.list_repositories,
          "List the mail repositories that hold mail", "mail repositories",
          ok("repositories with their sizes", s.page_of(s.REPOSITORY)), query=page),
        R("GET", "/mailRepositories/{repository}/mails", api.list_repository_mails,
          "List the mails of a repository", "mail repositories",
          ok("stored mails, oldest first", s.page_of(s.STORED_MAIL)), repo, page),
        R("GET", "/mailRepositories/{repository}/mails/{id}", api.get_repository_mail,
          "Show a stored mail", "mail repositories",
          ok("the mail without its message", s.STORED_MAIL_DETAIL), mail),
        R("GET", "/mailRepositories/{repository}/mails/{id}/eml",
          api.download_repository_mail, "Download a stored mail's message (.eml)",
          "mail repositories", ok("the message as stored", None), mail,
          media={200: "message/rfc822"}),
        R("DELETE", "/mailRepositories/{repository}/mails/{id}",
          api.delete_repository_mail, "Delete a stored mail", "mail repositories",
          {204: ("deleted", None)}, mail),
        R("POST", "/mailRepositories/{repository}/reprocess", api.reprocess_repository,
          "Send a repository's mails (or one) back to the spool", "mail repositories",
          ok("the mails moved and the processor each restarts in", s.MOVED), repo,
          body=s.body({"processor": {**s.NAME, "description":
                                     "processor to restart in; default: where each came "
                                     "from"}, "id": s.ID}, ("processor", "id"))),
        R("POST", "/mailRepositories/{repository}/purge", api.purge_repository,
          "Delete a repository's old mails", "mail repositories",
          ok("how many were deleted", s.obj({"purged": s.INTEGER})), repo,
          body=s.body({"olderThan": {"type": "string", "minLength": 1, "maxLength": 64,
                                     "description": "an age: 30d, 12h, 90 minutes"},
                       "keep": {"type": "integer", "minimum": 0, "maximum": s.MAX_INT,
                                "description": "keep the newest N"}},
                      ("olderThan", "keep"))),
        R("GET", "/queue", api.list_queue, "List the outgoing queue", "queue",
          ok("entries, soonest attempt first", s.page_of(s.QUEUE_ENTRY)),
          query=[*queue_filter, *page]),
        R("GET", "/queue/destinations", api.queue_destinations,
          "The outgoing queue by destination", "queue",
          ok("one group per queue and destination domain", s.page_of(s.DESTINATION)),
          query=page),
        R("POST", "/queue/flush", api.flush_queue, "Make every entry due now", "queue",
          ok("how many entries are due now", s.DUE), query=queue_filter),
        R("GET", "/queue/{id}", api.get_queue_entry, "Show a queue entry", "queue",
          ok("the entry", s.QUEUE_ENTRY), entry),
        R("POST", "/queue/{id}/retry", api.retry_queue_entry, "Make an entry due now",
          "queue", ok("due now", s.DUE), entry),
        R("DELETE", "/queue/{id}", api.delete_queue_entry,
          "Remove an entry without delivering or bouncing it", "queue",
          {204: ("deleted", None)}, entry),
        R("GET", "/spool", api.spool_states, "The spool by processor state", "spool",
          ok("mails per state", s.page_of(s.SPOOL_STATE)), query=page),
        R("GET", "/spool/mails", api.list_spool, "List the spooled mails", "spool",
          ok("mails being processed, oldest first", s.page_of(s.SPOOL_MAIL)),
          query=[_param("state", {**s.NAME, "default": None}, "only this state"), *page]),
        R("GET", "/nodes", api.list_nodes, "The processes sharing the database", "nodes",
          ok("registered nodes", s.page_of(s.NODE)), query=page),
        R("GET", "/healthcheck", api.healthcheck, "Database, blob store and listeners",
          "health", {200: ("healthy", s.HEALTH), 503: ("unhealthy", s.HEALTH)},
          public=True),
    ]
