"""Builds the bridge from settings: store, HighLevel client, Bolt app and workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import aiohttp
import httpx
from slack_bolt.async_app import AsyncApp
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.cluster import SharedBudget
from bot.cluster.leases import LeaseKeeper
from bot.compose.assist import ComposeAssist
from bot.deps import Deps
from bot.files.fetch import AttachmentFetcher
from bot.files.inbound import InboundFiles
from bot.files.outbound import OutboundFiles, file_transfer_client
from bot.files.slack_files import SlackFileReader
from bot.health import DatabaseProbe, HealthSource, open_writable_store
from bot.highlevel import HighLevelClient, HighLevelOAuth, RateLimiter
from bot.home import HomeTab
from bot.inbound import InboundService, InboundWorker
from bot.inbound.polling import PollingWorker
from bot.inbox.actions import ConversationActions
from bot.inbox.history import ConversationHistory
from bot.inbox.waiting import ConversationMarks
from bot.listener_work import ListenerWork
from bot.observability import BridgeMetrics, Readiness, new_instance_id, program_version
from bot.outbound import OutboundService, OutboxWorker, SendPresenter
from bot.outbound.finishing import QuietPolicy, SendFinisher
from bot.outbound.intents import ComposeIntents, IntentRecovery
from bot.retention import RetentionWorker
from bot.settings import Settings
from bot.slack_app import build_bolt_app, build_slack_client, slack_workspaces
from bot.slack_install.authorize import WorkspaceAuthorize
from bot.slack_install.lifecycle import WorkspaceLifecycle
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.crypto import TokenCipher
from bot.tenancy.install import InstallOutcome, OAuthInstaller
from bot.tenancy.lifecycle import AppEvents, LostAccess
from bot.tenancy.routing import ChannelRouting
from bot.tenancy.tokens import TokenKeeper
from bot.webhook_auth import WebhookVerifier
from bot.workers import PeriodicWorker, Worker, WorkerGroup
from handlers.oauth import OAuthPages
from handlers.slack_install import SlackInstallPages
from handlers.webhooks import WebhookEndpoint
from storage import Store, StoreError

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0
ADOPT_INTERVAL_SECONDS = 300.0
# The workers' share when the listeners took the whole grace: a send already at HighLevel
# usually answers in this time; one cut off is handed over (see `Bridge.aclose`).
WORKER_STOP_MIN_SECONDS = 2.0
# The hand-over of what is left after the grace: three UPDATEs. A database that cannot take
# them in this time leaves the claims to expire, as a crash would.
HAND_OVER_SECONDS = 5.0


def highlevel_timeout(settings: Settings) -> httpx.Timeout:
    """GHL_TIMEOUT_SECONDS for the answer; connecting never waits longer than 5 s."""
    seconds = settings.ghl_timeout_seconds
    return httpx.Timeout(connect=min(5.0, seconds), read=seconds, write=seconds, pool=10.0)


class Bridge:
    """Everything `ghl-bridge serve` runs; `create` builds it, `start`/`aclose` run it."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        accounts: SubAccounts,
        oauth: HighLevelOAuth | None,
        slack_client: AsyncWebClient,
        bolt_app: AsyncApp,
        workers: WorkerGroup,
        lease_keeper: LeaseKeeper,
        webhooks: WebhookEndpoint,
        listener_work: ListenerWork,
        metrics: BridgeMetrics,
        oauth_pages: OAuthPages,
        slack_install: SlackInstallPages,
        http_clients: Sequence[httpx.AsyncClient] = (),
    ) -> None:
        self.settings = settings
        self.store = store
        self.accounts = accounts
        self._oauth = oauth
        self.oauth_pages = oauth_pages
        self.slack_install = slack_install
        self.slack_client = slack_client
        self.bolt_app = bolt_app
        self.workers = workers
        self.lease_keeper = lease_keeper
        # Apart from the other workers: it renews this instance's claims until they are
        # handed over, after the others have stopped.
        self._lease_workers = WorkerGroup([lease_keeper])
        self.webhooks = webhooks
        self.listener_work = listener_work
        self.metrics = metrics
        # Clients of the file transfers; closed in `aclose`.
        self._http_clients = tuple(http_clients)
        self._started = False

    @classmethod
    async def create(cls, settings: Settings) -> Bridge:
        """Open the store (applying migrations) and wire every part from `settings`."""
        # A read-only database (or a full disk) stops start-up here, with what to do about it.
        instance_id = settings.instance_id or new_instance_id()
        # Claims are held in the name of this process, not of INSTANCE_ID: a restart under
        # the same name must not renew (and so keep forever) what its dead predecessor held.
        store = await open_writable_store(
            settings.database_url,
            instance_id=f"{instance_id}/{new_instance_id()}",
            lease_seconds=settings.lease_seconds,
        )
        metrics = BridgeMetrics(store=store, instance_id=instance_id, version=program_version())
        log.info(
            "instance %s (ghl-bridge %s) on %s",
            instance_id,
            program_version(),
            "PostgreSQL, shared with other instances" if store.shared else "SQLite, alone",
        )
        # Several instances on one PostgreSQL share HighLevel's and Slack's rate limits.
        budget = SharedBudget(store) if store.shared else None
        pit = settings.pit_location
        if pit is not None:
            # The GHL_API_TOKEN sub-account is connected at every start (its token is never
            # stored: it lives in the settings).
            await store.save_location(pit[0], auth="pit")
        oauth: HighLevelOAuth | None = None
        # Stored HighLevel and Slack tokens are encrypted with one key.
        cipher = (
            TokenCipher(settings.token_encryption_key)
            if settings.token_encryption_key is not None
            else None
        )
        if settings.oauth_enabled:
            assert settings.ghl_client_id and settings.ghl_client_secret  # noqa: S101
            assert settings.token_encryption_key is not None  # noqa: S101
            oauth = HighLevelOAuth(
                client_id=settings.ghl_client_id,
                client_secret=settings.ghl_client_secret,
                base_url=settings.ghl_api_url,
                timeout=highlevel_timeout(settings),
            )

        async def access_lost(location_id: str, reason: str) -> None:
            await lost.access_lost(location_id, reason)

        keeper = TokenKeeper(
            store,
            oauth,
            cipher if oauth is not None else None,
            pit=pit,
            app_id=settings.app_id,
            on_access_lost=access_lost,
        )

        def make_client(location_id: str) -> HighLevelClient:
            return HighLevelClient(
                token=keeper.source(location_id),
                location_id=location_id,
                base_url=settings.ghl_api_url,
                timeout=highlevel_timeout(settings),
                observer=metrics,
                limiter=RateLimiter.for_location(location_id, budget=budget),
            )

        accounts = SubAccounts(store, make_client)
        routing = ChannelRouting(
            store,
            accounts,
            default_inbox=settings.slack_inbox_channel,
            # With several workspaces, each sees only its own sub-accounts.
            per_workspace=settings.slack_oauth_enabled,
        )
        # One keep-alive connection pool for every Web API call (Bolt's per-request clients
        # reuse the session of `slack_client` too); closed in `aclose`.
        slack_session = aiohttp.ClientSession()
        slack_client = build_slack_client(settings, session=slack_session)

        async def slack_installed(installation: Installation) -> None:
            if installation.team_id:
                await workspace_lifecycle.installed(installation.team_id)

        workspaces, installs, oauth_flow = slack_workspaces(
            settings, store, cipher, slack_session, budget, metrics, on_installed=slack_installed
        )
        workspace_lifecycle = WorkspaceLifecycle(
            store=store, workspaces=workspaces, installs=installs, reload_accounts=accounts.reload
        )
        presenter = SendPresenter(
            store=store, slack=workspaces, outcomes=metrics, accounts=accounts
        )
        install_url = f"{settings.public_url}/ghl/install" if settings.oauth_enabled else None
        lost = LostAccess(
            store=store,
            accounts=accounts,
            routing=routing,
            slack=workspaces,
            presenter=presenter,
            reconnect_url=install_url,
        )
        installer: OAuthInstaller | None = None
        if oauth is not None:
            assert settings.ghl_client_id and settings.oauth_redirect_uri  # noqa: S101
            installer = OAuthInstaller(
                store,
                oauth,
                keeper,
                client_id=settings.ghl_client_id,
                marketplace_url=settings.ghl_marketplace_url,
                redirect_uri=settings.oauth_redirect_uri,
                app_id=settings.app_id or "",
            )

        async def connected(outcome: InstallOutcome) -> None:
            # Served at once by this instance; the others see it within RELOAD_SECONDS.
            await accounts.reload()

        oauth_pages = OAuthPages(installer, on_connected=connected)
        file_http = file_transfer_client()
        # Waiting, unread and star on thread roots (customer messages, answers, webhooks).
        marks = ConversationMarks(store=store, slack=workspaces, accounts=accounts)
        outbox = OutboxWorker(
            store=store,
            accounts=accounts,
            presenter=presenter,
            outcomes=metrics,
            files=OutboundFiles(
                store=store,
                accounts=accounts,
                reader=SlackFileReader(
                    slack=workspaces, http=file_http, slack_api_url=settings.slack_api_url
                ),
            ),
            on_answered=marks.answered,
        )
        connect_hint = (
            f" An admin can connect one at {install_url} (or `/highlevel connect`)."
            if install_url
            else ""
        )
        assist = ComposeAssist(accounts)
        finisher = SendFinisher(
            slack=workspaces,
            assist=assist,
            signature=settings.signature,
            quiet=QuietPolicy(
                hours=settings.quiet_hours,
                email_too=settings.quiet_hours_email,
                default_tz=settings.quiet_hours_tz,
            )
            if settings.quiet_hours is not None
            else None,
        )
        outbound = OutboundService(
            store=store,
            accounts=accounts,
            routing=routing,
            slack=workspaces,
            presenter=presenter,
            wake_worker=outbox.wake,
            finisher=finisher,
            connect_hint=connect_hint,
        )
        # Customers' attachments into their threads: at most MAX_INBOUND_FILE_MB each, from
        # public addresses (or the HighLevel API's own host, when that is private: a sandbox).
        inbound_files = InboundFiles(
            store=store,
            slack=workspaces,
            fetcher=AttachmentFetcher(
                max_bytes=int(settings.max_inbound_file_mb * 1024 * 1024),
                trusted_base_url=settings.ghl_api_url,
            ),
            accounts=accounts,
        )
        inbound_worker = InboundWorker(
            store=store,
            slack=workspaces,
            presenter=presenter,
            accounts=accounts,
            routing=routing,
            files=inbound_files,
            marks=marks,
        )
        inbound = InboundService(store=store, wake_worker=inbound_worker.wake)
        webhooks = WebhookEndpoint(
            WebhookVerifier(settings.ghl_webhook_public_key),
            inbound,
            accounts,
            app_events=AppEvents(installer, accounts) if installer is not None else None,
        )
        bolt_app = build_bolt_app(
            settings,
            slack_client,
            oauth_flow=oauth_flow,
            authorize=WorkspaceAuthorize(workspaces) if oauth_flow is not None else None,
        )
        listener_work = ListenerWork()
        listener_work.install(bolt_app)
        intents = ComposeIntents(
            store=store, outbound=outbound, region=settings.phone_default_region
        )
        home = HomeTab(
            store=store,
            accounts=accounts,
            routing=routing,
            slack=workspaces,
            presenter=presenter,
            assist=assist,
            allowed_users=settings.allowed_slack_users,
            # A publish still waiting at a stop is waited for (or cancelled) with the listeners.
            track=listener_work.track,
        )
        # Open Home tabs follow conversations that start or stop waiting.
        marks.on_waiting_changed = home.waiting_changed
        handlers.register_all(
            bolt_app,
            Deps(
                settings=settings,
                outbound=outbound,
                intents=intents,
                accounts=accounts,
                routing=routing,
                assist=assist,
                finisher=finisher,
                workspace_lifecycle=workspace_lifecycle,
                conversation_actions=ConversationActions(
                    store=store, accounts=accounts, slack=workspaces, marks=marks
                ),
                history=ConversationHistory(store=store, accounts=accounts, slack=workspaces),
                home=home,
            ),
        )

        def work_returned() -> None:
            outbox.wake()
            inbound_worker.wake()

        lease_keeper = LeaseKeeper(
            store,
            on_sends_taken=outbox.request_reconcile,
            on_events_taken=inbound_worker.wake,
            on_work_returned=work_returned,
            sends_in_flight=outbox.sends_in_flight,
            observer=metrics,
        )
        workers: list[Worker] = [
            # Sends a stop or a crash cut off between the ack and the outbox entry.
            IntentRecovery(store=store, intents=intents, outbound=outbound, session=slack_session),
            outbox,
            inbound_worker,
            PeriodicWorker(
                "purge-deliveries",
                lambda: store.purge_expired(time.time()),
                interval=PURGE_INTERVAL_SECONDS,
            ),
        ]
        if settings.slack_oauth_enabled and settings.slack_bot_token is not None:
            # SLACK_BOT_TOKEN's workspace keeps the sub-accounts it worked with before the
            # install flow was on (again every few minutes: auth.test may fail at start).
            workers.append(
                PeriodicWorker(
                    "adopt-sub-accounts",
                    workspace_lifecycle.adopt_for_bot_token,
                    interval=ADOPT_INTERVAL_SECONDS,
                )
            )
        if settings.message_retention_days is not None:
            # MESSAGE_RETENTION_DAYS: old message content purged in short batches, hourly.
            workers.append(RetentionWorker(store, settings.message_retention_days, clock=time.time))
        if settings.ghl_poll_seconds > 0:
            workers.append(
                PollingWorker(
                    accounts=accounts,
                    inbound=inbound,
                    store=store,
                    interval=settings.ghl_poll_seconds,
                    legacy_location=pit[0] if pit is not None else None,
                )
            )
        return cls(
            settings,
            store=store,
            accounts=accounts,
            oauth=oauth,
            slack_client=slack_client,
            bolt_app=bolt_app,
            workers=WorkerGroup(workers),
            lease_keeper=lease_keeper,
            webhooks=webhooks,
            listener_work=listener_work,
            metrics=metrics,
            oauth_pages=oauth_pages,
            slack_install=SlackInstallPages(oauth_flow),
            http_clients=[file_http],
        )

    def start(self, *, socket_mode: HealthSource | None = None) -> None:
        """Start the workers; `socket_mode` (the Socket Mode connection) counts for health."""
        self._database = DatabaseProbe(self.store)
        self._readiness = Readiness(self.store, self._database)
        self._socket_mode = socket_mode
        self.workers.start()
        self._lease_workers.start()
        self._started = True

    async def healthy(self) -> str | None:
        """None when the bridge works; else one line saying why not: the database takes no
        writes (first: workers that keep failing usually fail for that), a worker keeps
        failing, or Socket Mode is not connected."""
        if not self._started:
            return "not running"
        problem = (
            await self._database.problem()
            or self.workers.problem()
            or self._lease_workers.problem()
        )
        if problem is None and self._socket_mode is not None:
            problem = self._socket_mode.problem()
        return problem

    async def ready(self) -> str | None:
        """None when this instance can take traffic; else one line saying why not: the
        database takes no writes, or its schema is not the one this program knows."""
        if not self._started:
            return "not running"
        return await self._readiness.problem()

    async def aclose(self, grace: float = 0.0) -> None:
        """Wait for the Slack listeners still at work, then stop the workers (each finishes its
        current item), hand over what is left, then close the clients and the database, all
        within about `grace` s.

        Call it once no new Slack request can arrive. A listener still running after `grace`
        is cancelled: its compose intent stays open and the next start (or, on a shared
        database, another instance after a lease) finishes it. The claims the workers were cut
        off from are handed over (`LeaseKeeper.hand_over`): another instance takes them at
        once, or this bridge's next start does.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        started = self._started
        # What it took over now, the stopping workers would not finish; its own claims it
        # keeps renewing until they are handed over.
        self.lease_keeper.stop_taking_over()
        in_flight = self.listener_work.in_flight
        finished, left = await self.listener_work.drain(grace)
        if in_flight or left:
            log.info(
                "stopping: %d Slack listener tasks finished, %d left (a send they left "
                "unfinished is kept, and finished at the next start)",
                finished,
                left,
            )
        # The workers went on sending what the listeners queued meanwhile; now each finishes
        # the item in hand (an item cut off is handed over below, never resent blindly).
        await self.workers.stop(grace=max(deadline - loop.time(), WORKER_STOP_MIN_SECONDS))
        await self._lease_workers.stop(grace=WORKER_STOP_MIN_SECONDS)
        if started:
            await self._hand_over()
        self._started = False
        self.webhooks.not_served.flush()  # the count since its last line, not lost at a stop
        await self.accounts.aclose()
        for client in self._http_clients:
            await client.aclose()
        if self._oauth is not None:
            await self._oauth.aclose()
        if self.slack_client.session is not None:
            await self.slack_client.session.close()
        await self.store.close()

    async def _hand_over(self) -> None:
        try:
            await asyncio.wait_for(self.lease_keeper.hand_over(), HAND_OVER_SECONDS)
        except (StoreError, TimeoutError) as exc:
            log.warning(
                "stopping: could not hand over this instance's claims (%s); they are taken "
                "over once their lease has run out",
                " ".join(str(exc).split()) or type(exc).__name__,
            )
