
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tether' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tether'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tether' {
            [CompletionResult]::new('-H', '-H ', [CompletionResultType]::ParameterName, 'Add a handshake header, ''Name: value'' (repeatable); @FILE reads one header a line from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out of the process list')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'Add a handshake header, ''Name: value'' (repeatable); @FILE reads one header a line from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out of the process list')
            [CompletionResult]::new('--header-cmd', '--header-cmd', [CompletionResultType]::ParameterName, 'Run CMD before every dial (the first and each reconnect); each line it prints, ''Name: value'', is a handshake header for that attempt, replacing -H headers of the same name. Its output is secret')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Offer a subprotocol (repeatable); the one the server picks is reported')
            [CompletionResult]::new('--subprotocol', '--subprotocol', [CompletionResultType]::ParameterName, 'Offer a subprotocol (repeatable); the one the server picks is reported')
            [CompletionResult]::new('--origin', '--origin', [CompletionResultType]::ParameterName, 'Send this Origin header')
            [CompletionResult]::new('-u', '-u', [CompletionResultType]::ParameterName, 'Basic authentication; userinfo in the URL works too')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Basic authentication; userinfo in the URL works too')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Limit for DNS, TCP (and any proxy), TLS and the HTTP upgrade together')
            [CompletionResult]::new('--resolve', '--resolve', [CompletionResultType]::ParameterName, 'Connect to these addresses for HOST:PORT instead of asking DNS, as curl does (repeatable)')
            [CompletionResult]::new('--max-message-size', '--max-message-size', [CompletionResultType]::ParameterName, 'Largest message accepted from the server (e.g. 64MiB, 512KiB, 1000)')
            [CompletionResult]::new('--compression', '--compression', [CompletionResultType]::ParameterName, 'Offer permessage-deflate, so the server may compress what it sends (tether sends uncompressed unless --compress)')
            [CompletionResult]::new('-x', '-x', [CompletionResultType]::ParameterName, 'Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]')
            [CompletionResult]::new('--proxy', '--proxy', [CompletionResultType]::ParameterName, 'Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]')
            [CompletionResult]::new('--unix-socket', '--unix-socket', [CompletionResultType]::ParameterName, 'Connect to this Unix-domain socket instead of the URL''s host and port; the URL still gives the Host header and the path (as curl''s --unix-socket)')
            [CompletionResult]::new('--max-redirects', '--max-redirects', [CompletionResultType]::ParameterName, 'Most redirects to follow with -L [default: 10]')
            [CompletionResult]::new('--cacert', '--cacert', [CompletionResultType]::ParameterName, 'Trust the CA certificates in this PEM file, besides the system''s')
            [CompletionResult]::new('--cert', '--cert', [CompletionResultType]::ParameterName, 'Client certificate (PEM), for servers that ask for one; needs --key')
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Private key for --cert (PEM, PKCS#8 or RSA)')
            [CompletionResult]::new('--ping-interval', '--ping-interval', [CompletionResultType]::ParameterName, 'Send a Ping this often; 0 turns heartbeats off')
            [CompletionResult]::new('--ping-timeout', '--ping-timeout', [CompletionResultType]::ParameterName, 'Declare the connection dead when no Pong comes this long after a Ping was written')
            [CompletionResult]::new('--backoff-initial', '--backoff-initial', [CompletionResultType]::ParameterName, 'First reconnect delay; later ones double, with jitter')
            [CompletionResult]::new('--backoff-max', '--backoff-max', [CompletionResultType]::ParameterName, 'Longest reconnect delay, jitter included')
            [CompletionResult]::new('--max-reconnects', '--max-reconnects', [CompletionResultType]::ParameterName, 'Give up after this many failed attempts in a row. Without it, reconnects after a drop are unlimited and a failed first connection is not retried')
            [CompletionResult]::new('--on-connect', '--on-connect', [CompletionResultType]::ParameterName, 'Send this message after every (re)connection, before anything queued (repeatable; {{env.NAME}} is the environment variable NAME, read once at start)')
            [CompletionResult]::new('--on-connect-cmd', '--on-connect-cmd', [CompletionResultType]::ParameterName, 'Run CMD before every dial, as --header-cmd does; each line it prints is a message sent once connected, after the --on-connect ones. Its output is secret: not in --json-sent, not in -vvv''s frame payloads')
            [CompletionResult]::new('--reply', '--reply', [CompletionResultType]::ParameterName, 'Answer every received text message matching the regex MATCHER with RESPONSE, at once and before anything queued, on every connection (repeatable; the first that matches answers). In RESPONSE, {{1}} or {{name}} is a group of the match')
            [CompletionResult]::new('--reply-text', '--reply-text', [CompletionResultType]::ParameterName, 'As --reply, for a message containing MATCHER, taken literally')
            [CompletionResult]::new('--reply-json', '--reply-json', [CompletionResultType]::ParameterName, 'As --reply, for a JSON message for which the jq filter MATCHER is true; in RESPONSE, {{.id}} is a jq filter run on the message, e.g. ''{"type":"pong","id":{{.id}}}''')
            [CompletionResult]::new('--app-ping', '--app-ping', [CompletionResultType]::ParameterName, 'Send this text message every --app-ping-interval as an application heartbeat; with no reply matching --app-pong (or --app-pong-json) within --ping-timeout, the connection is dead and reconnected ("application heartbeat timeout")')
            [CompletionResult]::new('--app-ping-interval', '--app-ping-interval', [CompletionResultType]::ParameterName, 'How often --app-ping is sent')
            [CompletionResult]::new('--app-pong', '--app-pong', [CompletionResultType]::ParameterName, 'The reply to --app-ping: a text message this regex matches')
            [CompletionResult]::new('--app-pong-json', '--app-pong-json', [CompletionResultType]::ParameterName, 'The reply to --app-ping: a JSON message for which this jq filter is true')
            [CompletionResult]::new('--queue-size', '--queue-size', [CompletionResultType]::ParameterName, 'Messages held while disconnected before reading input pauses')
            [CompletionResult]::new('--replay-window', '--replay-window', [CompletionResultType]::ParameterName, 'Sent bytes kept until a Pong confirms the server read them, and re-sent after a drop; also caps what is in flight unconfirmed. 0 turns this off')
            [CompletionResult]::new('--confirm-by-reply', '--confirm-by-reply', [CompletionResultType]::ParameterName, 'A sent message leaves the replay window only when a received message matching REGEX answers it, not when a Pong does: the Nth matching reply on a connection confirms the Nth unanswered message sent on it ('''' matches every reply)')
            [CompletionResult]::new('--confirm-by-reply-text', '--confirm-by-reply-text', [CompletionResultType]::ParameterName, 'As --confirm-by-reply, for replies containing TEXT, taken literally')
            [CompletionResult]::new('--confirm-by-reply-json', '--confirm-by-reply-json', [CompletionResultType]::ParameterName, 'As --confirm-by-reply, for JSON replies for which this jq filter is true, e.g. ''has("result")''')
            [CompletionResult]::new('--confirm-key', '--confirm-key', [CompletionResultType]::ParameterName, 'With --confirm-by-reply (or alone, for every reply): a jq filter, such as .id, whose value pairs a reply with the request it answers, in any order')
            [CompletionResult]::new('--linger', '--linger', [CompletionResultType]::ParameterName, 'After stdin ends, wait this long with no incoming message before closing')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Close after receiving this many messages')
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Close after receiving this many messages')
            [CompletionResult]::new('--exec', '--exec', [CompletionResultType]::ParameterName, 'Run CMD in place of stdin and stdout: its output records are sent, each received message is written to its input (split into words as a shell would, but no shell runs: use `sh -c ''...''` for pipes and variables). Its stderr passes through; a failing CMD''s exit status becomes tether''s')
            [CompletionResult]::new('--binary-format', '--binary-format', [CompletionResultType]::ParameterName, 'How to print binary messages [default: hex dump on a terminal, base64 in a pipe, hex in a pipe for a smoke test]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour stdout and stderr (-v diagnostics included): auto colours a stream that is a terminal unless NO_COLOR is set and not empty; always colours pipes and files too')
            [CompletionResult]::new('--send', '--send', [CompletionResultType]::ParameterName, 'Send this message once connected, after any --on-connect and --on-connect-cmd messages (repeatable, in order; {{env.NAME}} is the environment variable NAME)')
            [CompletionResult]::new('--expect', '--expect', [CompletionResultType]::ParameterName, 'Wait for a message matching this regex; each --expect, --expect-text and --expect-json must be matched, in the order given (repeatable)')
            [CompletionResult]::new('--expect-text', '--expect-text', [CompletionResultType]::ParameterName, 'Wait for a message containing this text, taken literally (repeatable)')
            [CompletionResult]::new('--expect-json', '--expect-json', [CompletionResultType]::ParameterName, 'Wait for a JSON message for which this jq filter is true, e.g. ''.type == "pong"'' (repeatable)')
            [CompletionResult]::new('--script', '--script', [CompletionResultType]::ParameterName, 'Run the steps in this scenario file (''-'' reads it from stdin); the steps: SCENARIO FILES in man tether')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Fail with exit code 6 if the whole run, connecting included, takes longer than this')
            [CompletionResult]::new('-4', '-4', [CompletionResultType]::ParameterName, 'Use IPv4 addresses only')
            [CompletionResult]::new('--ipv4', '--ipv4', [CompletionResultType]::ParameterName, 'Use IPv4 addresses only')
            [CompletionResult]::new('-6', '-6', [CompletionResultType]::ParameterName, 'Use IPv6 addresses only')
            [CompletionResult]::new('--ipv6', '--ipv6', [CompletionResultType]::ParameterName, 'Use IPv6 addresses only')
            [CompletionResult]::new('--compress', '--compress', [CompletionResultType]::ParameterName, 'Compress what tether sends too, when the server agrees to permessage-deflate')
            [CompletionResult]::new('--no-proxy', '--no-proxy', [CompletionResultType]::ParameterName, 'Connect directly, ignoring HTTPS_PROXY, HTTP_PROXY and ALL_PROXY')
            [CompletionResult]::new('-L', '-L ', [CompletionResultType]::ParameterName, 'Follow redirects (301, 302, 303, 307, 308) answered to the handshake')
            [CompletionResult]::new('--location', '--location', [CompletionResultType]::ParameterName, 'Follow redirects (301, 302, 303, 307, 308) answered to the handshake')
            [CompletionResult]::new('-k', '-k', [CompletionResultType]::ParameterName, 'Do not verify the server''s certificate (prints a warning)')
            [CompletionResult]::new('--insecure', '--insecure', [CompletionResultType]::ParameterName, 'Do not verify the server''s certificate (prints a warning)')
            [CompletionResult]::new('--no-reconnect', '--no-reconnect', [CompletionResultType]::ParameterName, 'Never reconnect: the first failure ends the session')
            [CompletionResult]::new('--reconnect-always', '--reconnect-always', [CompletionResultType]::ParameterName, 'Reconnect even after the server closes normally (code 1000)')
            [CompletionResult]::new('--binary', '--binary', [CompletionResultType]::ParameterName, 'Send input lines as binary messages instead of text')
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Byte stream, as websocat''s -b: stdin''s bytes are sent as binary messages as they arrive (what each read returns, up to 64 KiB a message), and every received message is written to stdout as its bytes alone, text too, with no separator (escaped on a terminal)')
            [CompletionResult]::new('--byte-stream', '--byte-stream', [CompletionResultType]::ParameterName, 'Byte stream, as websocat''s -b: stdin''s bytes are sent as binary messages as they arrive (what each read returns, up to 64 KiB a message), and every received message is written to stdout as its bytes alone, text too, with no separator (escaped on a terminal)')
            [CompletionResult]::new('-0', '-0', [CompletionResultType]::ParameterName, 'Input (and output) records end with NUL instead of newline')
            [CompletionResult]::new('--null', '--null', [CompletionResultType]::ParameterName, 'Input (and output) records end with NUL instead of newline')
            [CompletionResult]::new('--verbatim', '--verbatim', [CompletionResultType]::ParameterName, 'Send stdin lines exactly as read: keep the \r of a CRLF line ending, and send an empty line as an empty message (both are dropped by default; --binary and -0 are always exact)')
            [CompletionResult]::new('--keep-open', '--keep-open', [CompletionResultType]::ParameterName, 'Stay connected after stdin ends, until the server closes or Ctrl-C')
            [CompletionResult]::new('--echo', '--echo', [CompletionResultType]::ParameterName, 'Send every received message back unchanged, instead of reading stdin (each echo goes out once: no replay after a drop)')
            [CompletionResult]::new('--timestamps', '--timestamps', [CompletionResultType]::ParameterName, 'Prefix each received message with the time it was received; a message''s further lines are indented by the time''s width, so only a message''s first line starts with a time')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON object per event on stdout (the schema: JSON EVENTS in man tether)')
            [CompletionResult]::new('--json-sent', '--json-sent', [CompletionResultType]::ParameterName, 'With --json, also record every message tether sends, as a ''sent'' event once it is written to the socket (in order with the messages received; a replay after a reconnect is marked)')
            [CompletionResult]::new('-P', '-P ', [CompletionResultType]::ParameterName, 'Show the server''s Pings and the Pongs tether gets (its heartbeat''s round trips; Pongs the server sends unasked, marked): ''*'' lines in the REPL, stderr lines in a pipe, and ''ping'' and ''pong'' events with --json')
            [CompletionResult]::new('--show-ping-pong', '--show-ping-pong', [CompletionResultType]::ParameterName, 'Show the server''s Pings and the Pongs tether gets (its heartbeat''s round trips; Pongs the server sends unasked, marked): ''*'' lines in the REPL, stderr lines in a pipe, and ''ping'' and ''pong'' events with --json')
            [CompletionResult]::new('--pretty', '--pretty', [CompletionResultType]::ParameterName, 'Indent messages that are JSON, changing only whitespace: keys in their order (duplicates too), numbers and escapes as sent; other text as received')
            [CompletionResult]::new('--strict', '--strict', [CompletionResultType]::ParameterName, 'Fail when a message does not match the expectation waiting for it, instead of skipping it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Start an echo server in this process and connect to it: try tether with no network')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tether;serve' {
            [CompletionResult]::new('--drop-after', '--drop-after', [CompletionResultType]::ParameterName, 'Drop each connection without a Close frame once N messages are echoed on it, as a crashing server would: for trying reconnects, replay and --on-connect')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'tether;demo' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'tether;completions' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'tether;man' {
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors and warnings on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'tether;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Start an echo server in this process and connect to it: try tether with no network')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page (roff)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tether;help;serve' {
            break
        }
        'tether;help;demo' {
            break
        }
        'tether;help;completions' {
            break
        }
        'tether;help;man' {
            break
        }
        'tether;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
