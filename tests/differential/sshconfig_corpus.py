"""The ssh_config corpus: many OpenSSH client configs × host names, compared with ``ssh -G``.

A :class:`Case` is a main config (given with ``-F``), files under the test home's
``.ssh`` (for ``Include``), the host names looked up, and optional ``-l``/``-p`` values.
:func:`all_cases` = :func:`handwritten_cases` (one per rule of ``readconf.c`` that bit us
or could) + :func:`generated_cases` (seeded random combinations of the same pieces: Host
and Match blocks, Include, tokens, comments, quoting, ``=``, keyword case, first value
wins, ProxyJump/ProxyCommand order, and a few lines ssh refuses).

Placeholders in file texts: ``{home}`` (the test home), ``{tmp}`` (a scratch folder for
``Match exec`` flag files). Host names are ``.example`` names or 127.0.0.x; nothing here
connects anywhere (``ssh -G`` only prints).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

HOSTS = ("web1.example", "web2.example", "db1.example", "Web1.Example", "bastion.example",
         "127.0.0.5", "edge")


@dataclass
class Case:
    name: str
    config: str
    files: dict = field(default_factory=dict)  # path under {home}/.ssh -> text
    hosts: tuple = HOSTS
    user: str | None = None  # ssh -l
    port: int | None = None  # ssh -p
    flags: tuple = ()  # files created in {tmp} before the run (for Match exec)


def handwritten_cases() -> list[Case]:
    c = Case
    return [
        c("trailing_comment", "Host web1.example\n  HostName 127.0.0.7 # primary\n  Port 2222 #x\n"),
        c("hash_inside_word", "Host *\n  HostName a#b.example\n  User u#1\n"),
        c("equals_forms", "Host=web1.example\nHostName = h1.example\nPort=2201\nUser =bob\n"
                          "Host db1.example\n  Port= 2202\n"),
        c("quoted_values", 'Host "web1.example" edge\n  User "bob smith"\n  IdentityFile "~/my keys/id"\n'
                           "  HostName 'q.example'\n"),
        c("escapes", 'Host *\n  IdentityFile ~/a\\ b\n  User x\\"y\n'),
        c("keyword_case", "HOST web1.example\n  HOSTNAME up.example\n  pOrT 2203\n  user Alice\n"),
        c("first_value_wins", "Host web1.example\n  Port 2204\nHost *\n  Port 2205\n  User first\n"
                              "  User second\n  HostName %h.first\nHost web*\n  HostName second\n"),
        c("host_case_sensitive", "Host WEB1.EXAMPLE Web1.Example\n  Port 2206\nHost web1.example\n  Port 2207\n"),
        c("host_negation", "Host *.example !db1.example\n  User web\nHost !web1.example\n  Port 2208\n"
                           "Host * !*\n  Port 1\n"),
        c("host_question", "Host web?.example\n  Port 2209\nHost ???\n  Port 2210\nHost 127.0.0.?\n  Port 2211\n"),
        c("hostname_tokens", "Host web*\n  HostName %h.inner\nHost db1.example\n  HostName pct%%x-%h\n"),
        c("hostname_bad_token", "Host web1.example\n  HostName %h-%p\n"),
        c("match_host_uses_hostname", "Host web1.example\n  HostName realweb.example\n"
                                      "Match host realweb.example\n  Port 2212\n"
                                      "Match originalhost web1.example\n  User orig\n"),
        c("match_host_case", "Match host WEB1.example\n  Port 2213\nMatch originalhost WEB*\n  User up\n"),
        c("match_user", "Host web1.example\n  User deploy\nMatch user deploy\n  Port 2214\n"
                        "Match user root,!deploy\n  Port 2215\nMatch !user deploy\n  IdentitiesOnly yes\n"),
        c("match_user_from_l", "Match user ops\n  Port 2216\n", user="ops"),
        c("match_localuser", "Match localuser root\n  Port 2217\nMatch !localuser root\n  Port 2218\n"),
        c("match_all", "Match all\n  User everyone\n  Port 2219\n"),
        c("match_not_all", "Match !all\n  Port 2220\nMatch all\n  Port 2221\n"),
        c("match_all_combined", "Match host x all\n  Port 2222\n"),
        c("match_canonical_all", "Match canonical all\n  Port 2223\nHost *\n  Port 2224\n"),
        c("match_final", "Host web1.example\n  HostName realweb.example\nHost realweb.example\n  Port 2225\n"
                         "Match final host realweb.example\n  User fin\nMatch final\n  IdentitiesOnly yes\n"),
        c("match_not_final", "Match !final\n  User notfinal\nMatch final\n  User final\n"),
        c("match_canonical", "Match canonical\n  Port 2226\nHost *\n  HostName %h.c\nMatch final\n  User u\n"),
        c("final_pass_host_lowercase", "Host Web1.Example\n  HostName MixedCase.Example\n"
                                       "Host mixedcase.example\n  Port 2227\nMatch final\n  User z\n"),
        c("match_exec", "Match exec true\n  Port 2228\nMatch exec false\n  User no\n"
                        "Match exec \"test %h = web1.example\"\n  User yes\n"),
        c("match_exec_tokens", "Host *\n  User %u-literal\nMatch exec \"test -e {tmp}/flag-%h-%p-%r\"\n  Port 2229\n",
          flags=("flag-web1.example-22-%u-literal",)),
        c("match_exec_skipped", "Match host nomatch exec \"false\"\n  Port 2230\nMatch !exec false\n  User ex\n"),
        c("match_comment", "Match host web* # web servers\n  Port 2231\n"),
        c("match_missing_arg", "Match host\n  Port 2232\n"),
        c("match_unknown_criterion", "Match color blue\n  Port 2233\n"),
        c("match_quoted_exec", 'Match exec "test 1 = 1" host "web*"\n  Port 2234\n'),
        c("match_equals", "Match host=web1.example\n  Port 2235\n"),
        c("include_relative", "Include inc1\nHost *\n  Port 2236\n",
          {"inc1": "Host web1.example\n  Port 2237\n  User inc\n"}),
        c("include_glob_sorted", "Include conf.d/*.conf\n",
          {"conf.d/b.conf": "Host *\n  Port 2238\n", "conf.d/a.conf": "Host web*\n  Port 2239\n",
           "conf.d/c.txt": "Host *\n  Port 2240\n"}),
        c("include_inside_host", "Host db1.example\n  Include inc_db\nHost *\n  User after\n",
          {"inc_db": "Port 2241\nHost web1.example\n  User webinc\n"}),
        c("include_restores_active", "Host web1.example\n  Include inc_m\n  Port 2242\n",
          {"inc_m": "Match host nomatch\n  User x\n"}),
        c("include_nested", "Include n1\n", {"n1": "Include n2\nHost edge\n  Port 2243\n",
                                             "n2": "Host *\n  User nested\n"}),
        c("include_tilde_absolute", "Include ~/.ssh/t1 {home}/.ssh/t2\n",
          {"t1": "Host web*\n  Port 2244\n", "t2": "Host *\n  Port 2245\n  User abs\n"}),
        c("include_missing_is_fine", "Include nothing-here\nInclude none*.conf\nHost *\n  Port 2246\n"),
        c("include_loop", "Include loop\n", {"loop": "Include loop\n"}),
        c("include_inactive_match_exec", "Host nomatch\n  Include inc_e\nHost *\n  Port 2247\n",
          {"inc_e": "Match exec true\n  User never\n"}),
        c("proxyjump_then_command", "Host web1.example\n  ProxyJump jump@bastion.example:2200\n"
                                    "  ProxyCommand nc %h %p\nHost *\n  ProxyJump other.example\n"),
        c("proxycommand_then_jump", "Host *\n  ProxyCommand ssh -W %h:%p gw.example # not a comment\n"
                                    "  ProxyJump gw.example\n"),
        c("proxyjump_none", "Host web1.example\n  ProxyJump none\nHost *\n  ProxyJump a.example,b.example:2\n"),
        c("proxycommand_none", "Host web1.example\n  ProxyCommand none\nHost *\n  ProxyJump j.example\n"),
        c("proxyjump_forms", "Host web1.example\n  ProxyJump ssh://u@j1.example:2201,[::1]:2202\n"
                             "Host db1.example\n  ProxyJump=u2@j2.example\n"
                             "Host edge\n  ProxyJump a.example # bastion\n"),
        c("proxyjump_bad_port", "Host *\n  ProxyJump j.example:99999\n"),
        c("connecttimeout_forms", "Host web1.example\n  ConnectTimeout 1m30s\nHost db1.example\n"
                                  "  ConnectTimeout none\nHost *\n  ConnectTimeout 7\n"),
        c("connecttimeout_bad", "Host *\n  ConnectTimeout soon\n"),
        c("identitiesonly_forms", "Host web1.example\n  IdentitiesOnly True\nHost *\n  IdentitiesOnly no\n"),
        c("identitiesonly_bad", "Host *\n  IdentitiesOnly maybe\n"),
        c("identityfile_accumulates", "Host web*\n  IdentityFile ~/.ssh/id_web\n  IdentityFile ~/.ssh/id_%h\n"
                                      "Host *\n  IdentityFile ~/.ssh/id_web\n  IdentityFile /k/%r@%h:%p\n"),
        c("identityagent_forms", "Host web1.example\n  IdentityAgent none\nHost db1.example\n"
                                 "  IdentityAgent SSH_AUTH_SOCK\nHost edge\n  IdentityAgent ~/agent-%h-%p-%r-%n-%%\n"
                                 "Host *\n  IdentityAgent /run/a/%u/%d/%i/%L/%k\n"),
        c("identityagent_hash", "Host *\n  IdentityAgent /a/%C\n"),
        c("identityagent_hash_jump", "Host *\n  ProxyJump j.example\n  IdentityAgent /a/%C-%j\n"),
        c("identityagent_hostkeyalias", "Host *\n  HostKeyAlias alias-%h\n  IdentityAgent /a/%k\n"),
        c("unknown_keyword", "Host *\n  Prot 2222\n"),
        c("unknown_keyword_inactive", "Host nomatch\n  Prot 2222\n"),
        c("ignoreunknown", "IgnoreUnknown Prot,Use*\nHost *\n  Prot 2222\n  UseKeychain yes\n  Port 2248\n"),
        c("ignoreunknown_after", "Host *\n  UseKeychain yes\nIgnoreUnknown UseKeychain\n"),
        c("extra_args", "Host *\n  HostName a b\n"),
        c("no_value", "Host *\n  Port\n"),
        c("bad_port", "Host nomatch\n  Port 0\n"),
        c("other_keywords_ignored", "Host *\n  ServerAliveInterval 30\n  ForwardAgent no\n  Port 2249\n"),
        c("user_no_tokens", "Host *\n  User %r-%h\n"),
        c("preset_user_port", "Host *\n  User cfg\n  Port 2250\nMatch user cli\n  IdentitiesOnly yes\n",
          user="cli", port=2251),
        c("blank_and_comment_lines", "\n# comment\n   # indented comment\n\t\nHost *\n\n  Port 2252\n"),
        c("crlf_lines", "Host web1.example\r\n  Port 2253\r\nHost *\r\n  User crlf\r\n"),
        c("tabs", "Host\tweb1.example\n\tPort\t2254\n\tUser\t\"t u\"\n"),
        c("port_forms", "Host web1.example\n  Port 0022\nHost db1.example\n  Port +22\nHost edge\n  Port ssh\n"),
        c("port_bad_suffix", "Host edge\n  Port 22x\n"),
        c("port_service_unknown", "Host *\n  Port no-such-service\n"),
        c("port_too_big", "Host *\n  Port 65536\n"),
        c("port_leading_space_quoted", 'Host *\n  Port " 2255"\n'),
        c("host_empty_pattern", 'Host ""\n  Port 2256\n'),
        c("host_hash_in_pattern", "Host web1#x web1.example#c\n  Port 2257\nHost edge # comment\n  Port 2258\n"),
        c("hostname_ipv6_case", "Host web1.example\n  HostName FE80::A\nHost db1.example\n  HostName 127.0.0.1\n"),
        c("hostname_case_final", "Host edge\n  HostName EDGE.Example\nMatch final host edge.example\n  Port 2259\n"),
        c("time_units", "Host web1.example\n  ConnectTimeout 1H2M3S\nHost db1.example\n  ConnectTimeout 1w\n"
                        "Host edge\n  ConnectTimeout 5x\n"),
        c("identitiesonly_case", "Host *\n  IdentitiesOnly YES\n"),
        c("proxyjump_extra_words", "Host *\n  ProxyJump a.example b.example\n"),
        c("proxyjump_empty_hop", "Host *\n  ProxyJump a.example,,b.example\n"),
        c("proxycommand_equals_quotes", 'Host *\n  ProxyCommand = "nc" %h   %p\n'),
        c("match_exec_quoted_hash", 'Match exec "test \'#\' = \'#\'"\n  Port 2260\n'),
        c("match_negated_host_list", "Match !host web*,db*\n  Port 2261\n"),
        c("match_host_pattern_negation_only", "Match host !web1.example\n  Port 2262\n"),
        c("match_user_case", "Match user ROOT\n  Port 2263\nMatch user root\n  Port 2264\n"),
        c("match_final_include", "Include fin\nMatch final\n  Port 2265\n",
          {"fin": "Match final host *.example\n  User fromfinal\n"}),
        c("include_quoted_spaces", 'Include "dir with space/*"\n', {"dir with space/a": "Host *\n  Port 2266\n"}),
        c("include_dotfiles_not_globbed", "Include inc.d/*\n", {"inc.d/.hidden": "Host *\n  Port 2267\n",
                                                                "inc.d/shown": "Host *\n  User shown\n"}),
        c("include_inside_match", "Match host web*\n  Include im\nHost *\n  Port 2268\n",
          {"im": "User im\nHost db*\n  User db\n"}),
        c("ignoreunknown_inactive", "Host nomatch\n  IgnoreUnknown Foo\nHost *\n  Foo bar\n"),
        c("ignoreunknown_case", "IgnoreUnknown FOO\nFoo 1\n"),
        c("keyword_quoted", '"Port" 2269\n'),
        c("value_only_comment", "Host *\n  Port # nothing\n"),
        c("backslash_end", "Host *\n  User a\\\n"),
        c("unbalanced_quote", 'Host *\n  User "abc\n'),
        c("identityfile_quoted_hash", 'Host *\n  IdentityFile "~/.ssh/id #1"\n'),
        c("identityagent_env", "Host web1.example\n  IdentityAgent $SSH_AUTH_SOCK\nHost db1.example\n"
                               "  IdentityAgent $1bad\nHost *\n  IdentityAgent ${NOT_SET_ANYWHERE_X}\n"),
    ]


# --------------------------------------------------------------------------- generated

_PATTERNS = ("*", "web*", "web1.example", "*.example", "!db1.example", "db?.example", "Web1.Example",
             "127.0.0.*", "edge", "bastion.example", "!web2.example", "nomatch", "*.EXAMPLE")
_MATCHES = ("host web*", "host *.example,!db*", "originalhost Web1.*", "user deploy", "user !root,*",
            "localuser root", "!localuser root", "all", "final", "!final", "canonical",
            "exec true", "exec false", 'exec "test %h = web1.example"', "host 127.0.0.5 exec true",
            "originalhost edge final", "!host web1.example user *")


QUOTED = '"a b"'


def _option(rng: random.Random, n: int) -> str:
    sep = rng.choice((" ", " ", "=", " = ", "\t"))
    kw = lambda k: rng.choice((k, k.lower(), k.upper()))  # noqa: E731
    choices = [
        lambda: f"{kw('HostName')}{sep}{rng.choice(('%h.inner', 'real%%', '127.0.0.9', 'Up.Example', 'h' + str(n)))}",
        lambda: f"{kw('Port')}{sep}{rng.randint(2000, 2999)}",
        lambda: f"{kw('User')}{sep}{rng.choice(('deploy', 'root', 'ops', QUOTED, 'u' + str(n)))}",
        lambda: f"{kw('IdentityFile')}{sep}{rng.choice(('~/.ssh/id_%h', '/keys/%r', '~/k' + str(n), '/k/%n-%p'))}",
        lambda: f"{kw('ProxyJump')}{sep}{rng.choice(('none', 'j1.example', 'u@j2.example:2022', 'a.example,b.example'))}",
        lambda: f"{kw('ProxyCommand')}{sep}{rng.choice(('none', 'nc %h %p', 'ssh -W %h:%p gw.example'))}",
        lambda: f"{kw('ConnectTimeout')}{sep}{rng.choice(('5', '1m', 'none', '0', '2h'))}",
        lambda: f"{kw('IdentitiesOnly')}{sep}{rng.choice(('yes', 'no', 'true', 'False'))}",
        lambda: f"{kw('IdentityAgent')}{sep}{rng.choice(('none', 'SSH_AUTH_SOCK', '~/a-%h', '/a/%r-%p-%n'))}",
        lambda: f"{kw('ServerAliveInterval')}{sep}{rng.randint(1, 60)}",
    ]
    line = rng.choice(choices)()
    if rng.random() < 0.15:
        line += "   # note"
    return line


def _bad(rng: random.Random) -> str:
    return rng.choice(("Prot 22", "Port 70000", "HostName a b", "ConnectTimeout soon",
                       "IdentitiesOnly maybe", "ProxyJump a.example:x", "HostName %h-%z"))


def _block(rng: random.Random, n: int, depth: int, files: dict) -> list[str]:
    lines = []
    if rng.random() < 0.3:
        lines.append("Match " + " ".join(rng.sample(_MATCHES, rng.randint(1, 2))))
    else:
        lines.append("Host " + " ".join(rng.sample(_PATTERNS, rng.randint(1, 3))))
    for _ in range(rng.randint(1, 4)):
        lines.append("  " + _option(rng, n))
    if depth < 2 and rng.random() < 0.2:
        name = f"inc{n}_{depth}_{len(files)}"
        files[name] = "\n".join(_block(rng, n, depth + 1, files)) + "\n"
        lines.append(f"  Include {rng.choice((name, '~/.ssh/' + name, '{home}/.ssh/' + name))}")
    return lines


def generated_cases(count: int = 160, seed: int = 20261202) -> list[Case]:
    """``count`` random configs (seeded, so the corpus is the same on every run)."""
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        files: dict = {}
        lines = [("  " if rng.random() < 0.3 else "") + _option(rng, n) for _ in range(rng.randint(0, 2))]
        for _ in range(rng.randint(1, 5)):
            lines += _block(rng, n, 0, files)
        if rng.random() < 0.1:
            lines.insert(rng.randint(0, len(lines)), "  " + _bad(rng))
        cases.append(Case(f"gen{n:03d}", "\n".join(lines) + "\n", files,
                          user=rng.choice((None, None, None, "deploy")),
                          port=rng.choice((None, None, None, 2022))))
    return cases


def all_cases() -> list[Case]:
    """Handwritten then generated cases."""
    return handwritten_cases() + generated_cases()
