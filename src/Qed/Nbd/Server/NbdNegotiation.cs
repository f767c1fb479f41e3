using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>The handshake of one connection: greeting, options (TLS included), until GO or EXPORT_NAME chooses an export.</summary>
internal static class NbdNegotiation
{
    /// <summary>
    /// Runs the handshake on <paramref name="transport"/>. Returns the session to serve, or null when the client ended
    /// the handshake (ABORT, or closed) or must be dropped (protocol violation); the caller then closes the connection.
    /// The returned session's transport may differ from <paramref name="transport"/> (after STARTTLS).
    /// </summary>
    public static ValueTask<NbdSession?> NegotiateAsync(NbdTransport transport, NbdServerContext server, CancellationToken cancellationToken) =>
        throw new NotImplementedException("negotiation: owned by the negotiation branch");
}
