"""``ccfast serve``: build the core from the configuration and run every listener and link.

``run(config)`` is the whole process: the core loaded from ``callcenter.conf.xml`` (queues, then
XML agents, then XML tiers, as mod_callcenter loads them), one inbound link per FreeSWITCH box,
the outbound listener for callers, the dispatch loop and the control port. ``task_status``
receives a ``Running`` with the bound ports (tests and the demo listen on port 0).
"""

from __future__ import annotations

import dataclasses
import logging

import trio

from . import api as apimod
from . import config as configmod
from . import strings as S
from ._core import Core
from .control import ControlServer
from .esl.outbound import OutboundSession, serve_outbound
from .service import Clock, Service
from .service.links import BoxLink, MemberLinkAdapter

log = logging.getLogger("ccfast.serve")


@dataclasses.dataclass
class Running:
    service: Service
    outbound_port: int
    control_port: int | None
    control: ControlServer | None
    cancel_scope: trio.CancelScope

    def stop(self) -> None:
        self.cancel_scope.cancel()


def build_core(cfg: configmod.Config, now: int) -> Core:
    core = Core(instance_id=cfg.settings.cc_instance_id, reserve_agents=cfg.settings.reserve_agents)
    configmod.apply_startup(core, cfg, now)
    core.drain_journal()  # rows created from the XML are the starting point, not changes
    return core


async def run(cfg: configmod.Config, *, clock: Clock | None = None, core: Core | None = None,
              task_status=trio.TASK_STATUS_IGNORED) -> None:
    clock = clock or Clock()
    core = core or build_core(cfg, clock.now())
    service = Service(core, cfg.settings, clock=clock, config=cfg)
    settings = cfg.ccfast

    async with trio.open_nursery() as nursery:
        for box_cfg in settings.boxes:
            box = BoxLink(box_cfg.name, box_cfg.host, box_cfg.port, box_cfg.password)
            await nursery.start(box.run)
            service.add_box(box)
        await nursery.start(service.run)

        async def on_member(session: OutboundSession) -> None:
            await session.connect()
            await service.handle_member(MemberLinkAdapter(session))

        outbound_port = await nursery.start(
            serve_outbound, on_member, settings.outbound_listen.host, settings.outbound_listen.port
        )

        control = None
        control_port = None
        if settings.control_listen is not None:
            state = apimod.ApiState(core, cfg, reload_config=cfg.reload, break_channel=service.break_agent_channel)

            def after_command() -> None:
                for cancel in state.cancels:
                    service.cancel_offer(cancel.offer_id, S.HANGUP_ORIGINATOR_CANCEL)
                state.cancels.clear()
                service.changed()

            control = ControlServer(state, settings.control_password, now=clock.now, after_command=after_command)
            service.event_listeners.append(control.publish)
            control_port = await nursery.start(control.serve, settings.control_listen.host, settings.control_listen.port)
        log.info("ccfast serving: outbound %s:%s, control %s", settings.outbound_listen.host, outbound_port, control_port)
        task_status.started(Running(service, outbound_port, control_port, control, nursery.cancel_scope))
