"""callcenter.conf.xml as mod_callcenter reads it (reference §2), ccfast's settings, DB layout."""

from __future__ import annotations

import pytest

from ccfast import config
from ccfast.config import ConfigError, load_config

from .test_api import make_core

BODY = """
  <settings>
    <param name="ODBC-DSN" value=""/>
    <param name="Reserve-Agents" value="enabled"/>
    <param name="truncate-agents-on-load" value="maybe"/>
    <param name="truncate-tiers-on-load" value="1"/>
    <param name="agent-originate-timeout" value="abc"/>
    <param name="cc-instance-id" value=""/>
    <param name="dbname" value="/dev/shm/first.db"/>
    <param name="dbname" value="/dev/shm/callcenter.db"/>
  </settings>
  <queues>
    <queue name="support@default">
      <param name="Strategy" value="ring-all"/>
      <param name="moh-sound" value="$${hold_music}"/>
      <param name="max-wait-time" value="1.9"/>
      <param name="max-wait-time-with-no-agent" value="86401"/>
      <param name="discard-abandoned-after" value=" 30"/>
      <param name="tier-rules-apply" value="1.5"/>
      <param name="tier-rule-wait-multiply-level" value="sometimes"/>
      <param name="tier-rule-no-agent-no-wait" value=""/>
      <param name="abandoned-resume-allowed" value="yes"/>
      <param name="abandoned-resume-allowed" value="no"/>
      <param name="announce-frequency" value="30"/>
      <param name="announce-frequency" value=""/>
      <param name="agent-no-answer-status" value="nap"/>
      <param name="colour" value="blue"/>
    </queue>
    <queue name="sales@default">
      <param name="agent-no-answer-status" value="logged out"/>
    </queue>
  </queues>
  <agents>
    <agent name="1000@default" type="callback" contact="user/1000@default" status="Available"/>
    <agent name="1001@default" contact="user/1001@default"/>
    <agent name="1002@default" type="callback" status="sleeping"/>
  </agents>
  <tiers>
    <tier agent="1000@default" queue="support@default" level="2"/>
    <tier agent="1000@default"/>
  </tiers>
"""

BARE = f'<configuration name="callcenter.conf" description="CallCenter">{BODY}</configuration>'
DOCUMENT = f"""<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="Various Configuration">
    <configuration name="Callcenter.conf">{BODY}</configuration>
  </section>
</document>"""
INCLUDE = f"<include>{BARE}</include>"


def load(text: str, **kw) -> config.Config:
    return load_config("callcenter.conf.xml", text=text, **kw)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("text", [BARE, DOCUMENT, INCLUDE])
def test_document_forms_read_the_same(text):
    cfg = load(text)
    assert list(cfg.queues) == ["support@default", "sales@default"]
    assert [a.name for a in cfg.agents] == ["1000@default", "1001@default", "1002@default"]


def test_settings_are_parsed_like_the_module():
    s = load(BARE).settings
    assert s.reserve_agents is True
    assert s.truncate_agents_on_load is False  # not a true word: false
    assert s.truncate_tiers_on_load is True
    assert s.agent_originate_timeout == 60  # atoi("abc") == 0 -> 60
    assert s.cc_instance_id == "single_box"
    assert s.dbname == "/dev/shm/callcenter.db"  # the last one wins
    assert s.odbc_dsn is None
    assert s.global_database_lock is True
    assert load(BARE).database.sqlite_path == "/dev/shm/callcenter.db"


def test_queue_params_follow_freeswitch_rules():
    cfg = load(BARE)
    q = cfg.queues["support@default"]
    assert q.strategy == "ring-all"
    assert q.moh_sound == "$${hold_music}"  # kept verbatim, FreeSWITCH expands it
    assert q.max_wait_time == 1  # numeric-looking, atoi
    assert q.max_wait_time_with_no_agent == 0  # out of range: default
    assert q.discard_abandoned_after == 60  # " 30" is not a number for switch_is_number
    assert q.tier_rules_apply is True  # "1.5" -> atoi 1
    assert q.tier_rule_wait_multiply_level is False  # garbage: default
    assert q.tier_rule_no_agent_no_wait is True  # empty value: header not added, default
    assert q.abandoned_resume_allowed is True  # the first value wins
    assert q.announce_frequency == 0  # a later empty value deletes the earlier one
    assert q.agent_no_answer_status == "On Break"
    assert cfg.queues["sales@default"].agent_no_answer_status == "logged out"  # valid, kept as typed


def test_warnings_name_file_and_line():
    cfg = load(BARE)
    text = "\n".join(str(w) for w in cfg.warnings)
    for needle, fragment in [
        ('name="max-wait-time-with-no-agent"', "max-wait-time-with-no-agent='86401' is not an integer in 0..86400"),
        ('name="discard-abandoned-after"', "discard-abandoned-after=' 30'"),
        ('name="tier-rule-wait-multiply-level"', "is not a boolean"),
        ('name="agent-no-answer-status" value="nap"', "agent-no-answer-status='nap'"),
        ('name="colour"', "unknown param 'colour'"),
        ('name="1001@default"', "no type attribute"),
        ('status="sleeping"', "status 'sleeping' is not one of"),
        ('<tier agent="1000@default"/>', "needs both agent and queue"),
    ]:
        expected = f"callcenter.conf.xml:{line_of(BARE, needle)}: "
        assert any(str(w).startswith(expected) and fragment in str(w) for w in cfg.warnings), (needle, text)


def test_unparsable_xml_is_fatal_with_position():
    with pytest.raises(ConfigError) as info:
        load('<configuration name="callcenter.conf">\n<queues>\n<queue name="a">\n</queues>\n</configuration>')
    assert str(info.value).startswith("callcenter.conf.xml:4: XML error")


def test_missing_configuration_element():
    with pytest.raises(ConfigError, match='no <configuration name="callcenter.conf">'):
        load('<configuration name="sofia.conf"/>')


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/callcenter.conf.xml")


@pytest.mark.parametrize("second", ["support@default", "SUPPORT@default"])
def test_duplicate_queue_names_are_fatal(second):
    text = f'<configuration name="callcenter.conf"><queues>\n<queue name="support@default"/>\n<queue name="{second}"/>\n</queues></configuration>'
    with pytest.raises(ConfigError) as info:
        load(text)
    message = str(info.value)
    assert message.startswith(f"callcenter.conf.xml:3: queue {second}: duplicate queue name (first defined at callcenter.conf.xml:2)")
    assert "allowed:" in message


def test_odbc_dsn_is_fatal_and_points_at_the_param():
    text = '<configuration name="callcenter.conf"><settings>\n<param name="odbc-dsn" value="freeswitch:user:pass"/>\n</settings></configuration>'
    with pytest.raises(ConfigError) as info:
        load(text)
    assert str(info.value).startswith("callcenter.conf.xml:2: odbc-dsn: ") and "ODBC" in str(info.value)


def test_preprocessor_variables_in_settings():
    text = ('<document><X-PRE-PROCESS cmd="set" data="dsn=pgsql://host=db dbname=cc"/>'
            '<section name="configuration"><configuration name="callcenter.conf"><settings>'
            '<param name="odbc-dsn" value="$${dsn}"/></settings></configuration></section></document>')
    assert load(text).database.connect_kwargs == {"host": "db", "database": "cc"}
    with pytest.raises(ConfigError, match=r"odbc-dsn: uses the FreeSWITCH variable \$\$\{dsn\}"):
        load('<configuration name="callcenter.conf"><settings><param name="odbc-dsn" value="$${dsn}"/></settings></configuration>')


def test_agent_originate_timeout_rules():
    def timeout(value):
        return load(f'<configuration name="callcenter.conf"><settings><param name="agent-originate-timeout" value="{value}"/></settings></configuration>')
    assert timeout("30").settings.agent_originate_timeout == 30
    assert timeout("0").settings.agent_originate_timeout == 60
    assert timeout("45s").settings.agent_originate_timeout == 45
    cfg = timeout("-5")
    assert cfg.settings.agent_originate_timeout == 60 and "negative" in str(cfg.warnings[0])


# -- ccfast's own settings ----------------------------------------------------------------------

CCFAST = """<configuration name="ccfast.conf">
  <settings>
    <param name="outbound-listen" value="0.0.0.0:8040"/>
    <param name="control-listen" value="[::1]:8022"/>
    <param name="control-password" value="s3cret"/>
    <param name="metrics-listen" value=""/>
    <param name="dispatcher" value="Oracle"/>
    <param name="store-batch-ms" value="20"/>
  </settings>
  <boxes>
    <box name="fs1" host="10.0.0.1" password="ClueCon"/>
    <box name="fs2" host="10.0.0.2" port="8022" password="other"/>
  </boxes>
</configuration>"""


def test_ccfast_defaults():
    c = load(BARE).ccfast
    assert [(b.name, b.host, b.port, b.password) for b in c.boxes] == [("fs1", "127.0.0.1", 8021, "ClueCon")]
    assert str(c.outbound_listen) == "127.0.0.1:8040"
    assert str(c.control_listen) == "127.0.0.1:8022" and c.control_password == "ClueCon"
    assert str(c.metrics_listen) == "127.0.0.1:9464"
    assert (c.dispatcher, c.store_batch_ms, c.config_source) == ("core", 50, "xml")


def test_ccfast_separate_file_and_embedded_block():
    c = load(BARE, ccfast_text=CCFAST).ccfast
    assert [(b.name, b.host, b.port) for b in c.boxes] == [("fs1", "10.0.0.1", 8021), ("fs2", "10.0.0.2", 8022)]
    assert c.outbound_listen == config.Address("0.0.0.0", 8040)
    assert c.control_listen == config.Address("::1", 8022) and str(c.control_listen) == "[::1]:8022"
    assert c.metrics_listen is None
    assert c.dispatcher == "oracle" and c.store_batch_ms == 20
    assert "s3cret" not in repr(c) and "other" not in repr(c.boxes)
    inner = CCFAST.replace('<configuration name="ccfast.conf">', "<ccfast>").replace("</configuration>", "</ccfast>")
    embedded = BARE.replace("</configuration>", inner + "</configuration>")
    assert load(embedded).ccfast == c


@pytest.mark.parametrize("edit, line, fragment", [
    (('<box name="fs2" host="10.0.0.2"', '<box name="fs2"'), 12, "box fs2: no host"),
    (('port="8022"', 'port="80222"'), 12, "box fs2 port: '80222' is not an integer in 1..65535"),
    (('name="fs2"', 'name="fs1"'), 12, "box fs1: duplicate box name (first at <ccfast>:11)"),
    (('value="Oracle"', 'value="turbo"'), 7, "dispatcher: unknown mode 'turbo' (allowed: core | oracle)"),
    (('"outbound-listen" value="0.0.0.0:8040"', '"outbound-listen" value="0.0.0.0"'), 3, "outbound-listen: '0.0.0.0' is not an address"),
    (('value="[::1]:8022"', 'value="localhost:0"'), 4, "control-listen: port '0' is not a number in 1..65535"),
    (('"store-batch-ms"', '"store-batch"'), 8, "store-batch: unknown ccfast setting (allowed: outbound-listen,"),
])
def test_ccfast_fatal_errors(edit, line, fragment):
    with pytest.raises(ConfigError) as info:
        load(BARE, ccfast_text=CCFAST.replace(*edit))
    assert str(info.value).startswith(f"<ccfast>:{line}: {fragment}"), str(info.value)


def test_ccfast_param_in_settings_is_rejected():
    with pytest.raises(ConfigError, match="ccfast settings go in a <ccfast> element"):
        load('<configuration name="callcenter.conf"><settings><param name="ccfast-control-listen" value="x"/></settings></configuration>')


# -- applying to a core (§2.4-§2.6) -------------------------------------------------------------

APPLY = """<configuration name="callcenter.conf"><queues>
<queue name="q1"><param name="strategy" value="top-down"/></queue>
<queue name="q2"/></queues>
<agents>
<agent name="a1" type="Callback" contact="user/a1" status="Available" wrap-up-time="7" max-no-answer="2"
       reject-delay-time="3" busy-delay-time="4" no-answer-delay-time="5"/>
<agent name="a1" type="callback" contact="user/other"/>
<agent name="a2" type="uuid-standby" status="bogus"/>
<agent name="a3" contact="user/a3"/>
<agent name="a4" type="webrtc"/>
</agents>
<tiers>
<tier agent="a1" queue="q1" level="2" position="3"/>
<tier agent="a2" queue="q1" level="x"/>
<tier agent="a1" queue="q9"/>
<tier agent="zz" queue="q2"/>
</tiers></configuration>"""


def test_apply_startup():
    cfg = load(APPLY)
    core = make_core()
    config.apply_startup(core, cfg, 100)
    assert sorted(core.queue_names()) == ["q1", "q2"]
    agents = {a["name"]: a for a in core.rows("agents")}
    assert sorted(agents) == ["a1", "a2"]  # no type / bad type: ignored
    a1 = agents["a1"]
    assert (a1["type"], a1["contact"], a1["status"], a1["wrap_up_time"], a1["max_no_answer"],
            a1["reject_delay_time"], a1["busy_delay_time"], a1["no_answer_delay_time"],
            a1["last_status_change"]) == ("Callback", "user/a1", "Available", 7, 2, 3, 4, 5, 100)
    assert agents["a2"]["status"] == "Logged Out"  # invalid status silently ignored
    tiers = {(t["queue"], t["agent"]): (t["state"], t["level"], t["position"]) for t in core.rows("tiers")}
    assert tiers == {("q1", "a1"): ("Ready", 2, 3), ("q1", "a2"): ("Ready", 0, 1)}  # atoi("x") == 0


def test_tier_reload_resets_absent_level_and_position_to_one():
    cfg = load(APPLY)
    core = make_core()
    config.apply_startup(core, cfg, 100)
    core.tier_set("level", "q1", "a2", "9")
    core.tier_set("position", "q1", "a2", "9")
    assert config.load_tiers(core, cfg, 200, load_all=False, queue="Q1", agent="A2") is True
    tiers = {(t["queue"], t["agent"]): (t["level"], t["position"]) for t in core.rows("tiers")}
    assert tiers[("q1", "a2")] == (0, 1)
    assert config.load_tiers(core, cfg, 200, load_all=False, queue="q2", agent="a1") is False


def test_queue_lookup_is_case_insensitive_and_keeps_the_asked_name():
    cfg = load(APPLY)
    assert cfg.queue_params("Q1").name == "Q1" and cfg.queue_params("Q1").strategy == "top-down"
    assert cfg.queue_params("q3") is None


# -- config in the database (deployment-notes.md) ---------------------------------------------


def test_config_from_db_rows():
    ccfast = load(BARE).ccfast
    queues = [
        {"id": 2, "name": "sales", "strategy": "round-robin", "moh_sound": "$${hold_music}", "record_template": None,
         "time_base_score": "queue", "max_wait_time": 0, "max_wait_time_wna": 20, "max_wait_time_wna_tr": 7,
         "tier_rules_apply": "false", "tier_rule_wait_second": 300, "tier_rule_wait_ml": "true",
         "tier_rule_no_agent_no_wait": "false", "discard_abandoned_after": 60,
         "abandoned_resume_allowed": "false", "ring_progressively_delay": 10},
        {"id": 1, "name": "support", "strategy": "ring-all", "moh_sound": "local_stream://moh", "record_template": "/r/${uuid}",
         "time_base_score": "system", "max_wait_time": 99999, "max_wait_time_wna": 0, "max_wait_time_wna_tr": 5,
         "tier_rules_apply": True, "tier_rule_wait_second": 0, "tier_rule_wait_ml": "false",
         "tier_rule_no_agent_no_wait": "false", "discard_abandoned_after": 60,
         "abandoned_resume_allowed": "false", "ring_progressively_delay": 10},
    ]
    agents = [
        {"id": 1, "name": "1000@d", "type": "callback", "contact": "user/1000@d", "status": "Available",
         "max_no_answer": 3, "wrap_up_time": 10, "reject_delay_time": 3, "busy_delay_time": 60,
         "no_answer_delay_time": 5, "reserve_agents": "true", "truncate_agents_on_load": "false",
         "truncate_tiers_on_load": "true"},
    ]
    tiers = [{"id": 1, "agent": "1000@d", "queue": "sales", "level": 1, "position": 2}]
    settings = [{"id": 1, "odbc_dsn": None, "dbname": "/dev/shm/cc.db"}]
    cfg = config.config_from_db_rows(queues, agents, tiers, settings, ccfast)
    assert list(cfg.queues) == ["support", "sales"]  # by id
    sales = cfg.queues["sales"]
    assert (sales.strategy, sales.moh_sound, sales.max_wait_time_with_no_agent,
            sales.max_wait_time_with_no_agent_time_reached, sales.tier_rule_wait_multiply_level,
            sales.tier_rule_wait_second, sales.ring_progressively_delay) == ("round-robin", "$${hold_music}", 20, 7, True, 300, 10)
    support = cfg.queues["support"]
    assert support.tier_rules_apply is True and support.time_base_score == "system"
    assert support.max_wait_time == 0 and any("max-wait-time='99999'" in str(w) for w in cfg.warnings)
    assert cfg.agents[0].no_answer_delay_time == "5" and cfg.agents[0].type == "callback"
    assert (cfg.tiers[0].queue, cfg.tiers[0].level, cfg.tiers[0].position) == ("sales", "1", "2")
    assert cfg.settings.reserve_agents is True and cfg.settings.truncate_tiers_on_load is True
    assert cfg.database.sqlite_path == "/dev/shm/cc.db"
    core = make_core()
    config.apply_startup(core, cfg, 5)
    assert [(t["queue"], t["agent"], t["level"], t["position"]) for t in core.rows("tiers")] == [("sales", "1000@d", 1, 2)]


def test_db_rows_duplicate_queue_is_fatal():
    ccfast = load(BARE).ccfast
    with pytest.raises(ConfigError, match="duplicate queue name"):
        config.config_from_db_rows([{"id": 1, "name": "a"}, {"id": 2, "name": "A"}], [], [], [], ccfast)


def test_freeswitch_tolerated_xml():
    # "--" in comments and a bare "&" are accepted by FreeSWITCH's parser; lines stay right
    text = ('<configuration name="callcenter.conf">\n<!-- start with --config x --->\n<queues>\n'
            '<queue name="a&b"><param name="max-wait-time" value="x"/></queue>\n</queues></configuration>')
    cfg = load(text)
    assert list(cfg.queues) == ["a&b"]
    assert str(cfg.warnings[0]).startswith("callcenter.conf.xml:4: ")


def test_examples_load_cleanly():
    from pathlib import Path
    root = Path(__file__).parent.parent / "examples"
    cfg = load_config(root / "callcenter.conf.xml", root / "ccfast.conf.xml")
    assert cfg.warnings == []
    assert list(cfg.queues) == ["support@default", "sales@default", "vip@default"]
    defaults = load(BARE).ccfast
    assert cfg.ccfast == defaults  # the example shows the defaults


def test_db_config_reload_needs_the_hook():
    cfg = config.config_from_db_rows([], [], [], [], load(BARE).ccfast)
    with pytest.raises(ConfigError, match="came from the database"):
        cfg.reload()


def test_x_pre_process_include(tmp_path):
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.xml").write_text('<include>\n<agent name="a1" type="callback"/>\n</include>')
    (tmp_path / "agents" / "b.xml").write_text('<agent name="b1" type="callback" status="nope"/>')
    main = tmp_path / "callcenter.conf.xml"
    main.write_text('<configuration name="callcenter.conf"><agents>\n'
                    '<X-PRE-PROCESS cmd="include" data="agents/*.xml"/>\n</agents></configuration>')
    cfg = load_config(main)
    assert [a.name for a in cfg.agents] == ["a1", "b1"]
    assert str(cfg.warnings[0]).startswith(f"{tmp_path}/agents/b.xml:1: agent b1: status 'nope'")
    main.write_text('<configuration name="callcenter.conf">\n<X-PRE-PROCESS cmd="include" data="missing.xml"/></configuration>')
    with pytest.raises(ConfigError, match=r"callcenter.conf.xml:2: .*missing.xml cannot be read"):
        load_config(main)
