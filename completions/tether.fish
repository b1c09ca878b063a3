# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tether_global_optspecs
    string join \n H/header= header-cmd= s/subprotocol= origin= u/user= connect-timeout= resolve= 4/ipv4 6/ipv6 max-message-size= compression= compress x/proxy= no-proxy unix-socket= L/location max-redirects= k/insecure cacert= cert= key= ping-interval= ping-timeout= backoff-initial= backoff-max= max-reconnects= no-reconnect reconnect-always on-connect= on-connect-cmd= reply= reply-text= reply-json= app-ping= app-ping-interval= app-pong= app-pong-json= queue-size= replay-window= confirm-by-reply= confirm-by-reply-text= confirm-by-reply-json= confirm-key= binary b/byte-stream 0/null verbatim linger= n/count= keep-open echo exec= binary-format= timestamps json json-sent P/show-ping-pong pretty color= send= expect= expect-text= expect-json= strict script= timeout= v/verbose q/quiet h/help V/version
end

function __fish_tether_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tether_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tether_using_subcommand
    set -l cmd (__fish_tether_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tether -n "__fish_tether_needs_command" -s H -l header -d 'Add a handshake header, \'Name: value\' (repeatable); @FILE reads one header a line from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out of the process list' -r
complete -c tether -n "__fish_tether_needs_command" -l header-cmd -d 'Run CMD before every dial (the first and each reconnect); each line it prints, \'Name: value\', is a handshake header for that attempt, replacing -H headers of the same name. Its output is secret' -r
complete -c tether -n "__fish_tether_needs_command" -s s -l subprotocol -d 'Offer a subprotocol (repeatable); the one the server picks is reported' -r
complete -c tether -n "__fish_tether_needs_command" -l origin -d 'Send this Origin header' -r
complete -c tether -n "__fish_tether_needs_command" -s u -l user -d 'Basic authentication; userinfo in the URL works too' -r
complete -c tether -n "__fish_tether_needs_command" -l connect-timeout -d 'Limit for DNS, TCP (and any proxy), TLS and the HTTP upgrade together' -r
complete -c tether -n "__fish_tether_needs_command" -l resolve -d 'Connect to these addresses for HOST:PORT instead of asking DNS, as curl does (repeatable)' -r
complete -c tether -n "__fish_tether_needs_command" -l max-message-size -d 'Largest message accepted from the server (e.g. 64MiB, 512KiB, 1000)' -r
complete -c tether -n "__fish_tether_needs_command" -l compression -d 'Offer permessage-deflate, so the server may compress what it sends (tether sends uncompressed unless --compress)' -r -f -a "on\t''
off\t''"
complete -c tether -n "__fish_tether_needs_command" -s x -l proxy -d 'Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]' -r
complete -c tether -n "__fish_tether_needs_command" -l unix-socket -d 'Connect to this Unix-domain socket instead of the URL\'s host and port; the URL still gives the Host header and the path (as curl\'s --unix-socket)' -r -F
complete -c tether -n "__fish_tether_needs_command" -l max-redirects -d 'Most redirects to follow with -L [default: 10]' -r
complete -c tether -n "__fish_tether_needs_command" -l cacert -d 'Trust the CA certificates in this PEM file, besides the system\'s' -r -F
complete -c tether -n "__fish_tether_needs_command" -l cert -d 'Client certificate (PEM), for servers that ask for one; needs --key' -r -F
complete -c tether -n "__fish_tether_needs_command" -l key -d 'Private key for --cert (PEM, PKCS#8 or RSA)' -r -F
complete -c tether -n "__fish_tether_needs_command" -l ping-interval -d 'Send a Ping this often; 0 turns heartbeats off' -r
complete -c tether -n "__fish_tether_needs_command" -l ping-timeout -d 'Declare the connection dead when no Pong comes this long after a Ping was written' -r
complete -c tether -n "__fish_tether_needs_command" -l backoff-initial -d 'First reconnect delay; later ones double, with jitter' -r
complete -c tether -n "__fish_tether_needs_command" -l backoff-max -d 'Longest reconnect delay, jitter included' -r
complete -c tether -n "__fish_tether_needs_command" -l max-reconnects -d 'Give up after this many failed attempts in a row. Without it, reconnects after a drop are unlimited and a failed first connection is not retried' -r
complete -c tether -n "__fish_tether_needs_command" -l on-connect -d 'Send this message after every (re)connection, before anything queued (repeatable; {{env.NAME}} is the environment variable NAME, read once at start)' -r
complete -c tether -n "__fish_tether_needs_command" -l on-connect-cmd -d 'Run CMD before every dial, as --header-cmd does; each line it prints is a message sent once connected, after the --on-connect ones. Its output is secret: not in --json-sent, not in -vvv\'s frame payloads' -r
complete -c tether -n "__fish_tether_needs_command" -l reply -d 'Answer every received text message matching the regex MATCHER with RESPONSE, at once and before anything queued, on every connection (repeatable; the first that matches answers). In RESPONSE, {{1}} or {{name}} is a group of the match' -r
complete -c tether -n "__fish_tether_needs_command" -l reply-text -d 'As --reply, for a message containing MATCHER, taken literally' -r
complete -c tether -n "__fish_tether_needs_command" -l reply-json -d 'As --reply, for a JSON message for which the jq filter MATCHER is true; in RESPONSE, {{.id}} is a jq filter run on the message, e.g. \'{"type":"pong","id":{{.id}}}\'' -r
complete -c tether -n "__fish_tether_needs_command" -l app-ping -d 'Send this text message every --app-ping-interval as an application heartbeat; with no reply matching --app-pong (or --app-pong-json) within --ping-timeout, the connection is dead and reconnected ("application heartbeat timeout")' -r
complete -c tether -n "__fish_tether_needs_command" -l app-ping-interval -d 'How often --app-ping is sent' -r
complete -c tether -n "__fish_tether_needs_command" -l app-pong -d 'The reply to --app-ping: a text message this regex matches' -r
complete -c tether -n "__fish_tether_needs_command" -l app-pong-json -d 'The reply to --app-ping: a JSON message for which this jq filter is true' -r
complete -c tether -n "__fish_tether_needs_command" -l queue-size -d 'Messages held while disconnected before reading input pauses' -r
complete -c tether -n "__fish_tether_needs_command" -l replay-window -d 'Sent bytes kept until a Pong confirms the server read them, and re-sent after a drop; also caps what is in flight unconfirmed. 0 turns this off' -r
complete -c tether -n "__fish_tether_needs_command" -l confirm-by-reply -d 'A sent message leaves the replay window only when a received message matching REGEX answers it, not when a Pong does: the Nth matching reply on a connection confirms the Nth unanswered message sent on it (\'\' matches every reply)' -r
complete -c tether -n "__fish_tether_needs_command" -l confirm-by-reply-text -d 'As --confirm-by-reply, for replies containing TEXT, taken literally' -r
complete -c tether -n "__fish_tether_needs_command" -l confirm-by-reply-json -d 'As --confirm-by-reply, for JSON replies for which this jq filter is true, e.g. \'has("result")\'' -r
complete -c tether -n "__fish_tether_needs_command" -l confirm-key -d 'With --confirm-by-reply (or alone, for every reply): a jq filter, such as .id, whose value pairs a reply with the request it answers, in any order' -r
complete -c tether -n "__fish_tether_needs_command" -l linger -d 'After stdin ends, wait this long with no incoming message before closing' -r
complete -c tether -n "__fish_tether_needs_command" -s n -l count -d 'Close after receiving this many messages' -r
complete -c tether -n "__fish_tether_needs_command" -l exec -d 'Run CMD in place of stdin and stdout: its output records are sent, each received message is written to its input (split into words as a shell would, but no shell runs: use `sh -c \'...\'` for pipes and variables). Its stderr passes through; a failing CMD\'s exit status becomes tether\'s' -r
complete -c tether -n "__fish_tether_needs_command" -l binary-format -d 'How to print binary messages [default: hex dump on a terminal, base64 in a pipe, hex in a pipe for a smoke test]' -r -f -a "hex\t''
base64\t''
raw\t''"
complete -c tether -n "__fish_tether_needs_command" -l color -d 'When to colour stdout and stderr (-v diagnostics included): auto colours a stream that is a terminal unless NO_COLOR is set and not empty; always colours pipes and files too' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tether -n "__fish_tether_needs_command" -l send -d 'Send this message once connected, after any --on-connect and --on-connect-cmd messages (repeatable, in order; {{env.NAME}} is the environment variable NAME)' -r
complete -c tether -n "__fish_tether_needs_command" -l expect -d 'Wait for a message matching this regex; each --expect, --expect-text and --expect-json must be matched, in the order given (repeatable)' -r
complete -c tether -n "__fish_tether_needs_command" -l expect-text -d 'Wait for a message containing this text, taken literally (repeatable)' -r
complete -c tether -n "__fish_tether_needs_command" -l expect-json -d 'Wait for a JSON message for which this jq filter is true, e.g. \'.type == "pong"\' (repeatable)' -r
complete -c tether -n "__fish_tether_needs_command" -l script -d 'Run the steps in this scenario file (\'-\' reads it from stdin); the steps: SCENARIO FILES in man tether' -r -F
complete -c tether -n "__fish_tether_needs_command" -l timeout -d 'Fail with exit code 6 if the whole run, connecting included, takes longer than this' -r
complete -c tether -n "__fish_tether_needs_command" -s 4 -l ipv4 -d 'Use IPv4 addresses only'
complete -c tether -n "__fish_tether_needs_command" -s 6 -l ipv6 -d 'Use IPv6 addresses only'
complete -c tether -n "__fish_tether_needs_command" -l compress -d 'Compress what tether sends too, when the server agrees to permessage-deflate'
complete -c tether -n "__fish_tether_needs_command" -l no-proxy -d 'Connect directly, ignoring HTTPS_PROXY, HTTP_PROXY and ALL_PROXY'
complete -c tether -n "__fish_tether_needs_command" -s L -l location -d 'Follow redirects (301, 302, 303, 307, 308) answered to the handshake'
complete -c tether -n "__fish_tether_needs_command" -s k -l insecure -d 'Do not verify the server\'s certificate (prints a warning)'
complete -c tether -n "__fish_tether_needs_command" -l no-reconnect -d 'Never reconnect: the first failure ends the session'
complete -c tether -n "__fish_tether_needs_command" -l reconnect-always -d 'Reconnect even after the server closes normally (code 1000)'
complete -c tether -n "__fish_tether_needs_command" -l binary -d 'Send input lines as binary messages instead of text'
complete -c tether -n "__fish_tether_needs_command" -s b -l byte-stream -d 'Byte stream, as websocat\'s -b: stdin\'s bytes are sent as binary messages as they arrive (what each read returns, up to 64 KiB a message), and every received message is written to stdout as its bytes alone, text too, with no separator (escaped on a terminal)'
complete -c tether -n "__fish_tether_needs_command" -s 0 -l null -d 'Input (and output) records end with NUL instead of newline'
complete -c tether -n "__fish_tether_needs_command" -l verbatim -d 'Send stdin lines exactly as read: keep the \\r of a CRLF line ending, and send an empty line as an empty message (both are dropped by default; --binary and -0 are always exact)'
complete -c tether -n "__fish_tether_needs_command" -l keep-open -d 'Stay connected after stdin ends, until the server closes or Ctrl-C'
complete -c tether -n "__fish_tether_needs_command" -l echo -d 'Send every received message back unchanged, instead of reading stdin (each echo goes out once: no replay after a drop)'
complete -c tether -n "__fish_tether_needs_command" -l timestamps -d 'Prefix each received message with the time it was received; a message\'s further lines are indented by the time\'s width, so only a message\'s first line starts with a time'
complete -c tether -n "__fish_tether_needs_command" -l json -d 'Print one JSON object per event on stdout (the schema: JSON EVENTS in man tether)'
complete -c tether -n "__fish_tether_needs_command" -l json-sent -d 'With --json, also record every message tether sends, as a \'sent\' event once it is written to the socket (in order with the messages received; a replay after a reconnect is marked)'
complete -c tether -n "__fish_tether_needs_command" -s P -l show-ping-pong -d 'Show the server\'s Pings and the Pongs tether gets (its heartbeat\'s round trips; Pongs the server sends unasked, marked): \'*\' lines in the REPL, stderr lines in a pipe, and \'ping\' and \'pong\' events with --json'
complete -c tether -n "__fish_tether_needs_command" -l pretty -d 'Indent messages that are JSON, changing only whitespace: keys in their order (duplicates too), numbers and escapes as sent; other text as received'
complete -c tether -n "__fish_tether_needs_command" -l strict -d 'Fail when a message does not match the expectation waiting for it, instead of skipping it'
complete -c tether -n "__fish_tether_needs_command" -s v -l verbose -d 'More diagnostics on stderr (-v: debug, with each handshake\'s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames\' payloads too); RUST_LOG works too'
complete -c tether -n "__fish_tether_needs_command" -s q -l quiet -d 'Only errors and warnings on stderr'
complete -c tether -n "__fish_tether_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tether -n "__fish_tether_needs_command" -s V -l version -d 'Print version'
complete -c tether -n "__fish_tether_needs_command" -a "serve" -d 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)'
complete -c tether -n "__fish_tether_needs_command" -a "demo" -d 'Start an echo server in this process and connect to it: try tether with no network'
complete -c tether -n "__fish_tether_needs_command" -a "completions" -d 'Print a shell completion script'
complete -c tether -n "__fish_tether_needs_command" -a "man" -d 'Print the man page (roff)'
complete -c tether -n "__fish_tether_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tether -n "__fish_tether_using_subcommand serve" -l drop-after -d 'Drop each connection without a Close frame once N messages are echoed on it, as a crashing server would: for trying reconnects, replay and --on-connect' -r
complete -c tether -n "__fish_tether_using_subcommand serve" -s v -l verbose -d 'More diagnostics on stderr (-v: debug, with each handshake\'s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames\' payloads too); RUST_LOG works too'
complete -c tether -n "__fish_tether_using_subcommand serve" -s q -l quiet -d 'Only errors and warnings on stderr'
complete -c tether -n "__fish_tether_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tether -n "__fish_tether_using_subcommand demo" -s v -l verbose -d 'More diagnostics on stderr (-v: debug, with each handshake\'s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames\' payloads too); RUST_LOG works too'
complete -c tether -n "__fish_tether_using_subcommand demo" -s q -l quiet -d 'Only errors and warnings on stderr'
complete -c tether -n "__fish_tether_using_subcommand demo" -s h -l help -d 'Print help'
complete -c tether -n "__fish_tether_using_subcommand completions" -s v -l verbose -d 'More diagnostics on stderr (-v: debug, with each handshake\'s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames\' payloads too); RUST_LOG works too'
complete -c tether -n "__fish_tether_using_subcommand completions" -s q -l quiet -d 'Only errors and warnings on stderr'
complete -c tether -n "__fish_tether_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tether -n "__fish_tether_using_subcommand man" -s v -l verbose -d 'More diagnostics on stderr (-v: debug, with each handshake\'s request and response headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the frames\' payloads too); RUST_LOG works too'
complete -c tether -n "__fish_tether_using_subcommand man" -s q -l quiet -d 'Only errors and warnings on stderr'
complete -c tether -n "__fish_tether_using_subcommand man" -s h -l help -d 'Print help'
complete -c tether -n "__fish_tether_using_subcommand help; and not __fish_seen_subcommand_from serve demo completions man help" -f -a "serve" -d 'Run a WebSocket echo server (127.0.0.1 unless told otherwise)'
complete -c tether -n "__fish_tether_using_subcommand help; and not __fish_seen_subcommand_from serve demo completions man help" -f -a "demo" -d 'Start an echo server in this process and connect to it: try tether with no network'
complete -c tether -n "__fish_tether_using_subcommand help; and not __fish_seen_subcommand_from serve demo completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c tether -n "__fish_tether_using_subcommand help; and not __fish_seen_subcommand_from serve demo completions man help" -f -a "man" -d 'Print the man page (roff)'
complete -c tether -n "__fish_tether_using_subcommand help; and not __fish_seen_subcommand_from serve demo completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
