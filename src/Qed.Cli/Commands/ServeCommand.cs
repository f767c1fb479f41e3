using System.Text;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands.Serve;
using Qed.Nbd.Server;

namespace Qed.Cli.Commands;

/// <summary>
/// <c>qed serve [-f FMT] [-r] [-x NAME] [-D DESCRIPTION] [-k SOCKET | -p PORT -b ADDR] [-t] [-e SHARED]
/// [--discard=ignore|unmap] [-A] [--pid-file=F] [--fork] [--tls-creds=DIR] [--cache=MODE] [-v] FILE</c>: an NBD
/// server for one image, with qemu-nbd's command line and messages.
/// </summary>
/// <remarks>
/// Deliberate differences from qemu-nbd 7.2: <c>--tls-creds</c> names a credentials directory (qemu-nbd names an
/// <c>--object tls-creds-x509</c> whose <c>dir=</c> is that directory); <c>-k</c> with <c>-p</c> or <c>-b</c> is
/// refused (qemu-nbd ignores the TCP options); a port above 65535 is refused (qemu-nbd wraps it around); an existing
/// path at <c>-k</c> is replaced only when it is a socket nobody listens on (qemu-nbd unlinks whatever is there); the
/// pid file is removed on exit. The open failure reads <c>Could not open 'FILE': reason</c> as in the other commands,
/// without qemu-nbd's <c>Failed to blk_new_open 'FILE': </c> in front.
/// </remarks>
internal static class ServeCommand
{
    // qemu-nbd's NBD_MAX_STRING_SIZE: the longest name or description the protocol carries.
    private const int MaxStringBytes = 4096;

    private static readonly CliFlag s_version = new('V', "version", "print the version and exit");
    private static readonly CliFlag s_readOnly = new('r', "read-only", "export read-only: writes fail with EPERM");

    private static readonly CliOption<string> s_exportName = new('x', "export-name", "NAME", "the export's name (default: the empty name, the default export)",
        v => Encoding.UTF8.GetByteCount(v) <= MaxStringBytes ? v : throw new CliException($"export name '{v}' too long"));

    private static readonly CliOption<string> s_description = new('D', "description", "TEXT", "a human-readable description of the export",
        v => Encoding.UTF8.GetByteCount(v) <= MaxStringBytes ? v : throw new CliException($"export description '{v}' too long"));

    private static readonly CliOption<string> s_socket = new('k', "socket", "PATH", "listen on this unix socket instead of TCP", v => v);
    private static readonly CliOption<string> s_port = new('p', "port", "PORT", "the TCP port to listen on (default 10809)", v => v);
    private static readonly CliOption<string> s_bind = new('b', "bind", "ADDR", "the address to listen on (default 0.0.0.0; '::' for IPv6 and IPv4)", v => v);
    private static readonly CliFlag s_persistent = new('t', "persistent", "keep serving after the last client leaves");

    private static readonly CliOption<int> s_shared = new('e', "shared", "NUM", "serve up to NUM clients at once (default 1; 0: no limit); others wait",
        v => CNumber.TryParseSigned(v, 0, int.MaxValue, out long shared) ? (int)shared : throw new CliException($"Invalid shared device number '{v}'"));

    private static readonly CliOption<NbdDiscardMode> s_discard = new('\0', "discard", "MODE", "what TRIM does: ignore (default) or unmap", v => v switch
    {
        "ignore" or "off" => NbdDiscardMode.Ignore,
        "unmap" or "on" => NbdDiscardMode.Unmap,
        _ => throw new CliException($"Invalid discard mode `{v}'"),
    });

    private static readonly CliFlag s_allocationDepth = new('A', "allocation-depth", "offer the qemu:allocation-depth metadata context");
    private static readonly CliOption<string> s_pidFile = new('\0', "pid-file", "PATH", "write the server's process id to PATH once it listens (removed on exit)", v => v);
    private static readonly CliFlag s_fork = new('\0', "fork", "run in the background; return once the server listens");
    private static readonly CliOption<string> s_tlsCreds = new('\0', "tls-creds", "DIR",
        "require TLS with the credentials in DIR: server-cert.pem, server-key.pem, and ca-cert.pem to require client certificates", v => v);

    // qemu-nbd checks the mode as soon as it meets --cache; qed accepts the modes and uses the page cache.
    private static readonly CliOption<string> s_cache = CommonOptions.CacheMode('\0', "cache",
        "the cache mode (accepted for compatibility; qed uses the page cache)", mode => $"Invalid cache mode `{mode}'", checkLater: false);

    private static readonly CliFlag s_noCache = new('n', "nocache", "short for --cache=none (accepted for compatibility)");
    private static readonly CliOption<int> s_handshakeLimit = new('\0', "handshake-limit", "SECONDS",
        "drop clients that have not finished the handshake within SECONDS (default 10; 0: no limit)", v => Seconds(v, "handshake limit"));

    private static readonly CliOption<int> s_idleTimeout = new('\0', "idle-timeout", "SECONDS",
        "drop clients silent for SECONDS with no request in flight (default 0: never)", v => Seconds(v, "idle timeout"));

    private static readonly CliFlag s_verbose = new('v', "verbose", "report clients dropped and failures on stderr");

    /// <summary>The options of <c>qed serve</c>.</summary>
    public static OptionTable Options { get; } = new("serve", "FILE",
        """
        Serve FILE over NBD (the network block device protocol), as qemu-nbd does:
        on TCP 0.0.0.0:10809 unless -k, -p or -b say otherwise, to one client at a
        time unless -e, until the last client leaves unless -t. SIGTERM or SIGINT
        finish the requests in flight, flush and close the image, and exit 0.
        """,
        CommonOptions.Help, s_version, CommonOptions.Format, s_readOnly, s_exportName, s_description, s_socket, s_port, s_bind,
        s_persistent, s_shared, s_discard, s_allocationDepth, s_pidFile, s_fork, s_tlsCreds, s_cache, s_noCache, s_handshakeLimit,
        s_idleTimeout, s_verbose, CommonOptions.L2CacheSize);

    /// <summary>Runs the command.</summary>
    public static int Run(IReadOnlyList<string> args, CommandContext context)
    {
        ParsedArguments parsed;
        try
        {
            parsed = Options.Parse(args);
        }
        catch (GetOptException e)
        {
            throw new UsageException(GetOptMessage(e));
        }
        if (parsed.HelpRequested)
        {
            return HelpText.WriteCommand(context.Out, Options);
        }
        if (parsed.Has(s_version))
        {
            context.Out.WriteLine(Program.VersionLine);
            return 0;
        }
        if (parsed.Positionals.Count != 1)
        {
            throw new UsageException("Invalid number of arguments");
        }
        if (parsed.Has(s_socket) && (parsed.Has(s_port) || parsed.Has(s_bind)))
        {
            throw new UsageException("-p and -b cannot be used with -k (a unix socket has no port or address)");
        }

        var settings = new ServeSettings
        {
            FileName = parsed.Positionals[0],
            Format = parsed.Get(CommonOptions.Format),
            ReadOnly = parsed.Has(s_readOnly),
            ExportName = parsed.Get(s_exportName, ""),
            Description = parsed.Get(s_description),
            SocketPath = parsed.Get(s_socket),
            Port = parsed.Get(s_port, ServeSettings.DefaultPort.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            BindAddress = parsed.Get(s_bind, ServeSettings.DefaultBindAddress),
            Persistent = parsed.Has(s_persistent),
            Shared = parsed.Get(s_shared, 1),
            Discard = parsed.Get(s_discard, NbdDiscardMode.Ignore),
            AllocationDepth = parsed.Has(s_allocationDepth),
            PidFile = parsed.Get(s_pidFile),
            Fork = parsed.Has(s_fork),
            TlsCredentialsDirectory = parsed.Get(s_tlsCreds),
            L2CacheSize = parsed.GetValue(CommonOptions.L2CacheSize),
            Verbose = parsed.Has(s_verbose),
            HandshakeLimitSeconds = parsed.Get(s_handshakeLimit, 10),
            IdleTimeoutSeconds = parsed.Get(s_idleTimeout, 0),
        };

        if (settings.Fork && !ServeDaemon.IsChild)
        {
            return ServeDaemon.RunParent(["serve", .. args], context);
        }
        return ServeRunner.Run(settings, context);
    }

    // Whole seconds up to a day: enough for any client, small enough for TimeSpan and timers.
    private static int Seconds(string value, string what) =>
        CNumber.TryParseSigned(value, 0, 86400, out long seconds) ? (int)seconds : throw new CliException($"Invalid {what} '{value}'");

    /// <summary>glibc getopt's words, which qemu-nbd prints (qemu-img and the other commands word these their own way).</summary>
    private static string GetOptMessage(GetOptException e)
    {
        if (e.ShortOption is { } letter)
        {
            return e.Error == GetOptError.MissingArgument ? $"option requires an argument -- '{letter}'" : $"invalid option -- '{letter}'";
        }
        if (e.Error == GetOptError.MissingArgument)
        {
            return $"option '{e.Argument}' requires an argument";
        }
        int equals = e.Argument.IndexOf('=', StringComparison.Ordinal);
        if (equals > 2 && Options.Options.Any(o => !o.TakesArgument && o.LongName == e.Argument[2..equals]))
        {
            return $"option '{e.Argument[..equals]}' doesn't allow an argument";
        }
        return $"unrecognized option '{e.Argument}'";
    }
}
