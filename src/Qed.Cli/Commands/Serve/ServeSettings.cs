using Qed.Nbd.Server;

namespace Qed.Cli.Commands.Serve;

/// <summary>What <c>qed serve</c> was asked to do, once its command line was read and checked.</summary>
internal sealed record ServeSettings
{
    /// <summary>qemu-nbd's TCP port when <c>-p</c> is not given (the NBD port IANA assigned).</summary>
    public const int DefaultPort = 10809;

    /// <summary>qemu-nbd's bind address when <c>-b</c> is not given.</summary>
    public const string DefaultBindAddress = "0.0.0.0";

    /// <summary>The image to serve, as given.</summary>
    public required string FileName { get; init; }

    /// <summary>The image format (<c>-f</c>), or null to probe it.</summary>
    public string? Format { get; init; }

    /// <summary>Export read-only (<c>-r</c>).</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The export's name (<c>-x</c>); empty for the default export.</summary>
    public string ExportName { get; init; } = "";

    /// <summary>The export's description (<c>-D</c>), or null.</summary>
    public string? Description { get; init; }

    /// <summary>The unix socket to listen on (<c>-k</c>), or null for TCP.</summary>
    public string? SocketPath { get; init; }

    /// <summary>The TCP port as given (<c>-p</c>); checked when the listener is made, as qemu-nbd resolves it then.</summary>
    public string Port { get; init; } = DefaultPort.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The address or host name to bind (<c>-b</c>).</summary>
    public string BindAddress { get; init; } = DefaultBindAddress;

    /// <summary>Keep serving after the last client leaves (<c>-t</c>).</summary>
    public bool Persistent { get; init; }

    /// <summary>Most clients at once (<c>-e</c>); 0 means no limit, as in qemu-nbd.</summary>
    public int Shared { get; init; } = 1;

    /// <summary>What TRIM does (<c>--discard</c>).</summary>
    public NbdDiscardMode Discard { get; init; } = NbdDiscardMode.Ignore;

    /// <summary>Offer <c>qemu:allocation-depth</c> (<c>-A</c>).</summary>
    public bool AllocationDepth { get; init; }

    /// <summary>Where to write the server's process id once it listens (<c>--pid-file</c>), or null.</summary>
    public string? PidFile { get; init; }

    /// <summary>Run in the background once listening (<c>--fork</c>).</summary>
    public bool Fork { get; init; }

    /// <summary>The TLS credentials directory (<c>--tls-creds</c>), or null for no TLS.</summary>
    public string? TlsCredentialsDirectory { get; init; }

    /// <summary>Bytes of L2 tables to cache (<c>--l2-cache-size</c>), or null for the library's default.</summary>
    public long? L2CacheSize { get; init; }

    /// <summary>Report dropped clients and failures on stderr (<c>-v</c>).</summary>
    public bool Verbose { get; init; }

    /// <summary>Seconds a client has to finish the handshake (<c>--handshake-limit</c>, qemu-nbd 9.1's option; 0: no limit).</summary>
    public int HandshakeLimitSeconds { get; init; } = 10;

    /// <summary>Seconds a client may stay silent with nothing in flight before it is dropped (<c>--idle-timeout</c>; 0: never, the default).</summary>
    public int IdleTimeoutSeconds { get; init; }
}
