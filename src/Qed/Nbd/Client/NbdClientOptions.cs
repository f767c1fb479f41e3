namespace Qed.Nbd.Client;

/// <summary>What the client asks for in the handshake and how long it waits (defaults: everything it can use).</summary>
internal sealed record NbdClientOptions
{
    /// <summary>Largest READ/WRITE payload we send or accept, whatever the server advertises (NBD.md 3.1: interoperable clients stay within 32 MiB).</summary>
    public const uint DefaultMaxPayload = 32 * 1024 * 1024;

    /// <summary>Ask for structured replies (and then for <c>base:allocation</c>).</summary>
    public bool StructuredReplies { get; init; } = true;

    /// <summary>Ask for the <c>base:allocation</c> metadata context (block status).</summary>
    public bool BaseAllocation { get; init; } = true;

    /// <summary>Use <c>NBD_OPT_GO</c> (falling back to <c>EXPORT_NAME</c> when the server does not know it); false goes straight to <c>EXPORT_NAME</c>.</summary>
    public bool UseGo { get; init; } = true;

    /// <summary>The whole connect and handshake must finish within this time.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a dispose waits for requests in flight and for the server to close after <c>NBD_CMD_DISC</c>.</summary>
    public TimeSpan CloseTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Start TLS (STARTTLS) before anything else, with these settings; null for a plain connection.</summary>
    public NbdClientTls? Tls { get; init; }

    /// <summary>Cap on the payload of one request, below what the server advertises if that is larger.</summary>
    public uint MaxPayload { get; init; } = DefaultMaxPayload;
}

/// <summary>TLS settings of a client (libnbd's URI parameters).</summary>
/// <param name="CertificatesDirectory">A directory with <c>ca-cert.pem</c> (the CAs the server certificate must chain to) and optionally <c>client-cert.pem</c> and <c>client-key.pem</c>; null trusts the system's CAs and sends no client certificate.</param>
/// <param name="VerifyPeer">Check the server's certificate (chain and name); false accepts any (encryption without authentication).</param>
/// <param name="HostName">The name the server's certificate must carry (default: the URI's host, <c>localhost</c> for a unix socket).</param>
internal sealed record NbdClientTls(string? CertificatesDirectory, bool VerifyPeer, string? HostName);
