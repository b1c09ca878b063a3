
use builtin;
use str;

set edit:completion:arg-completer[tether] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tether'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tether'= {
            cand -H 'Add a handshake header, ''Name: value'' (repeatable); @FILE reads one header a line from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out of the process list'
            cand --header 'Add a handshake header, ''Name: value'' (repeatable); @FILE reads one header a line from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out of the process list'
            cand --header-cmd 'Run CMD before every dial (the first and each reconnect); each line it prints, ''Name: value'', is a handshake header for that attempt, replacing -H headers of the same name. Its output is secret'
            cand -s 'Offer a subprotocol (repeatable); the one the server picks is reported'
            cand --subprotocol 'Offer a subprotocol (repeatable); the one the server picks is reported'
            cand --origin 'Send this Origin header'
            cand -u 'Basic authentication; userinfo in the URL works too'
            cand --user 'Basic authentication; userinfo in the URL works too'
            cand --connect-timeout 'Limit for DNS, TCP (and any proxy), TLS and the HTTP upgrade together'
            cand --resolve 'Connect to these addresses for HOST:PORT instead of asking DNS, as curl does (repeatable)'
            cand --max-message-size 'Largest message accepted from the server (e.g. 64MiB, 512KiB, 1000)'
            cand --compression 'Offer permessage-deflate, so the server may compress what it sends (tether sends uncompressed unless --compress)'
            cand -x 'Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]'
            cand --proxy 'Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]'
            cand --unix-socket 'Connect to this Unix-domain socket instead of the URL''s host and port; the URL still gives the Host header and the path (as curl''s --unix-socket)'
            cand --max-redirects 'Most redirects to follow with -L [default: 10]'
            cand --cacert 'Trust the CA certificates in this PEM file, besides the system''s'
            cand --cert 'Client certificate (PEM), for servers that ask for one; needs --key'
            cand --key 'Private key for --cert (PEM, PKCS#8 or RSA)'
            cand --ping-interval 'Send a Ping this often; 0 turns heartbeats off'
            cand --ping-timeout 'Declare the connection dead when no Pong comes this long after a Ping was written'
            cand --backoff-initial 'First reconnect delay; later ones double, with jitter'
            cand --backoff-max 'Longest reconnect delay, jitter included'
            cand --max-reconnects 'Give up after this many failed attempts in a row. Without it, reconnects after a drop are unlimited and a failed first connection is not retried'
            cand --on-connect 'Send this message after every (re)connection, before anything queued (repeatable; {{env.NAME}} is the environment variable NAME, read once at start)'
            cand --on-connect-cmd 'Run CMD before every dial, as --header-cmd does; each line it prints is a message sent once connected, after the --on-connect ones. Its output is secret: not in --json-sent, not in -vvv''s frame payloads'
            cand --reply 'Answer every received text message matching the regex MATCHER with RESPONSE, at once and before anything queued, on every connection (repeatable; the first that matches answers). In RESPONSE, {{1}} or {{name}} is a group of the match'
            cand --reply-text 'As --reply, for a message containing MATCHER, taken literally'
            cand --reply-json 'As --reply, for a JSON message for which the jq filter MATCHER is true; in RESPONSE, {{.id}} is a jq filter run on the message, e.g. ''{"type":"pong","id":{{.id}}}'''
            cand --app-ping 'Send this text message every --app-ping-interval as an application heartbeat; with no reply matching --app-pong (or --app-pong-json) within --ping-timeout, the connection is dead and reconnected ("application heartbeat timeout")'
            cand --app-ping-interval 'How often --app-ping is sent'
            cand --app-pong 'The reply to --app-ping: a text message this regex matches'
            cand --app-pong-json 'The reply to --app-ping: a JSON message for which this jq filter is true'
            cand --queue-size 'Messages held while disconnected before reading input pauses'
            cand --replay-window 'Sent bytes kept until a Pong confirms the server read them, and re-sent after a drop; also caps what is in flight unconfirmed. 0 turns this off'
            cand --confirm-by-reply 'A sent message leaves the replay window only when a received message matching REGEX answers it, not when a Pong does: the Nth matching reply on a connection confirms the Nth unanswered message sent on it ('''' matches every reply)'
            cand --confirm-by-reply-text 'As --confirm-by-reply, for replies containing TEXT, taken literally'
            cand --confirm-by-reply-json 'As --confirm-by-reply, for JSON replies for which this jq filter is true, e.g. ''has("result")'''
            cand --confirm-key 'With --confirm-by-reply (or alone, for every reply): a jq filter, such as .id, whose value pairs a reply with the request it answers, in any order'
            cand --linger 'After stdin ends, wait this long with no incoming message before closing'
            cand -n 'Close after receiving this many messages'
            cand --count 'Close after receiving this many messages'
            cand --exec 'Run CMD in place of stdin and stdout: its output records are sent, each received message is written to its input (split into words as a shell would, but no shell runs: use `sh -c ''...''` for pipes and variables). Its stderr passes through; a failing CMD''s exit status becomes tether''s'
            cand --binary-format 'How to print binary messages [default: hex dump on a terminal, base64 in a pipe, hex in a pipe for a smoke test]'
            cand --color 'When to colour stdout and stderr (-v diagnostics included): auto colours a stream that is a terminal unless NO_COLOR is set and not empty; always colours pipes and files too'
            cand --send 'Send this message once connected, after any --on-connect and --on-connect-cmd messages (repeatable, in order; {{env.NAME}} is the environment variable NAME)'
            cand --expect 'Wait for a message matching this regex; each --expect, --expect-text and --expect-json must be matched, in the order given (repeatable)'
            cand --expect-text 'Wait for a message containing this text, taken literally (repeatable)'
            cand --expect-json 'Wait for a JSON message for which this jq filter is true, e.g. ''.type == "pong"'' (repeatable)'
            cand --script 'Run the steps in this scenario file (''-'' reads it from stdin); the steps: SCENARIO FILES in man tether'
            cand --timeout 'Fail with exit code 6 if the whole run, connecting included, takes longer than this'
            cand -4 'Use IPv4 addresses only'
            cand --ipv4 'Use IPv4 addresses only'
            cand -6 'Use IPv6 addresses only'
            cand --ipv6 'Use IPv6 addresses only'
            cand --compress 'Compress what tether sends too, when the server agrees to permessage-deflate'
            cand --no-proxy 'Connect directly, ignoring HTTPS_PROXY, HTTP_PROXY and ALL_PROXY'
            cand -L 'Follow redirects (301, 302, 303, 307, 308) answered to the handshake'
            cand --location 'Follow redirects (301, 302, 303, 307, 308) answered to the handshake'
            cand -k 'Do not verify the server''s certificate (prints a warning)'
            cand --insecure 'Do not verify the server''s certificate (prints a warning)'
            cand --no-reconnect 'Never reconnect: the first failure ends the session'
            cand --reconnect-always 'Reconnect even after the server closes normally (code 1000)'
            cand --binary 'Send input lines as binary messages instead of text'
            cand -b 'Byte stream, as websocat''s -b: stdin''s bytes are sent as binary messages as they arrive (what each read returns, up to 64 KiB a message), and every received message is written to stdout as its bytes alone, text too, with no separator (escaped on a terminal)'
            cand --byte-stream 'Byte stream, as websocat''s -b: stdin''s bytes are sent as binary messages as they arrive (what each read returns, up to 64 KiB a message), and every received message is written to stdout as its bytes alone, text too, with no separator (escaped on a terminal)'
            cand -0 'Input (and output) records end with NUL instead of newline'
            cand --null 'Input (and output) records end with NUL instead of newline'
            cand --verbatim 'Send stdin lines exactly as read: keep the \r of a CRLF line ending, and send an empty line as an empty message (both are dropped by default; --binary and -0 are always exact)'
            cand --keep-open 'Stay connected after stdin ends, until the server closes or Ctrl-C'
            cand --echo 'Send every received message back unchanged, instead of reading stdin (each echo goes out once: no replay after a drop)'
            cand --timestamps 'Prefix each received message with the time it was received; a message''s further lines are indented by the time''s width, so only a message''s first line starts with a time'
            cand --json 'Print one JSON object per event on stdout (the schema: JSON EVENTS in man tether)'
            cand --json-sent 'With --json, also record every message tether sends, as a ''sent'' event once it is written to the socket (in order with the messages received; a replay after a reconnect is marked)'
            cand -P 'Show the server''s Pings and the Pongs tether gets (its heartbeat''s round trips; Pongs the server sends unasked, marked): ''*'' lines in the REPL, stderr lines in a pipe, and ''ping'' and ''pong'' events with --json'
            cand --show-ping-pong 'Show the server''s Pings and the Pongs tether gets (its heartbeat''s round trips; Pongs the server sends unasked, marked): ''*'' lines in the REPL, stderr lines in a pipe, and ''ping'' and ''pong'' events with --json'
            cand --pretty 'Indent messages that are JSON, changing only whitespace: keys in their order (duplicates too), numbers and escapes as sent; other text as received'
            cand --strict 'Fail when a message does not match the expectation waiting for it, instead of skipping it'
            cand -v 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand --verbose 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand -q 'Only errors and warnings on stderr'
            cand --quiet 'Only errors and warnings on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)'
            cand demo 'Start an echo server in this process and connect to it: try tether with no network'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page (roff)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tether;serve'= {
            cand --drop-after 'Drop each connection without a Close frame once N messages are echoed on it, as a crashing server would: for trying reconnects, replay and --on-connect'
            cand -v 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand --verbose 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand -q 'Only errors and warnings on stderr'
            cand --quiet 'Only errors and warnings on stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'tether;demo'= {
            cand -v 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand --verbose 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand -q 'Only errors and warnings on stderr'
            cand --quiet 'Only errors and warnings on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'tether;completions'= {
            cand -v 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand --verbose 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand -q 'Only errors and warnings on stderr'
            cand --quiet 'Only errors and warnings on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'tether;man'= {
            cand -v 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand --verbose 'More diagnostics on stderr (-v: debug, with each handshake''s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames'' payloads too); RUST_LOG works too'
            cand -q 'Only errors and warnings on stderr'
            cand --quiet 'Only errors and warnings on stderr'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'tether;help'= {
            cand serve 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)'
            cand demo 'Start an echo server in this process and connect to it: try tether with no network'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page (roff)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tether;help;serve'= {
        }
        &'tether;help;demo'= {
        }
        &'tether;help;completions'= {
        }
        &'tether;help;man'= {
        }
        &'tether;help;help'= {
        }
    ]
    $completions[$command]
}
