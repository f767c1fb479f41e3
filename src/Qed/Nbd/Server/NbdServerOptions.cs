using System.Security.Cryptography.X509Certificates;

namespace Qed.Nbd.Server;

/// <summary>How an <see cref="NbdServer"/> accepts and limits its clients.</summary>
public sealed record NbdServerOptions
{
    /// <summary>Most clients connected at once (qemu-nbd's <c>-e</c>, default 1); further connections wait in the listen backlog.</summary>
    public int MaxConnections { get; init; } = 1;

    /// <summary>Keep serving after the last client leaves (qemu-nbd's <c>-t</c>); otherwise <see cref="NbdServer.RunAsync"/> returns then.</summary>
    public bool Persistent { get; init; }

    /// <summary>The server's certificate with its private key: with one, clients must STARTTLS before anything else.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    /// <summary>When set, clients must present a certificate issued by one of these (qemu's <c>verify-peer</c> with a <c>ca-cert.pem</c>).</summary>
    public X509Certificate2Collection? TlsClientCertificateAuthorities { get; init; }

    /// <summary>Time a client has to finish the handshake (TLS included) before it is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time a connected client may stay silent with nothing in flight before it is dropped; infinite by default, as qemu-nbd.</summary>
    public TimeSpan IdleTimeout { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>Most options one client may send during the handshake before it is dropped.</summary>
    public int MaxOptions { get; init; } = 256;

    /// <summary>Largest READ or WRITE payload, advertised as the maximum block size (32 MiB, as qemu-nbd).</summary>
    public int MaxPayload { get; init; } = 32 * 1024 * 1024;

    /// <summary>Most requests one connection may have in flight; the server stops reading from it at this count.</summary>
    public int MaxRequestsInFlight { get; init; } = 64;

    /// <summary>Most payload bytes (write data received, read data not yet sent) held for one connection; the server stops reading from it above this.</summary>
    public long MaxBufferedBytesPerConnection { get; init; } = 8 * 1024 * 1024;

    /// <summary>Called with a one-line message when a client is dropped or a request fails in a way only the operator can see; null for silence.</summary>
    public Action<string>? Diagnostics { get; init; }
}
