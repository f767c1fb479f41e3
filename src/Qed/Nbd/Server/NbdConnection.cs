using System.Net.Sockets;
using System.Security.Authentication;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>One client from accept to close: handshake under a deadline, then transmission; its failures stay its own.</summary>
internal static class NbdConnection
{
    public static async Task RunAsync(NbdTransport transport, NbdServerContext server, string peer)
    {
        NbdTransport current = transport;
        try
        {
            NbdSession? session;
            using (var handshakeDeadline = CancellationTokenSource.CreateLinkedTokenSource(server.Stopping))
            {
                handshakeDeadline.CancelAfter(server.Options.HandshakeTimeout);
                try
                {
                    session = await NbdNegotiation.NegotiateAsync(transport, server, handshakeDeadline.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (handshakeDeadline.IsCancellationRequested && !server.Stopping.IsCancellationRequested)
                {
                    server.Report($"{peer}: dropped: handshake not finished within {server.Options.HandshakeTimeout.TotalSeconds:0.###} s");
                    return;
                }
            }

            if (session is null)
            {
                return;
            }

            current = session.Transport;
            await NbdTransmissionLoop.RunAsync(session, server, server.Stopping).ConfigureAwait(false);
            await current.ShutdownAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or AuthenticationException or ObjectDisposedException or NbdProtocolException)
        {
            // One client's failure never reaches the listener or the other clients (NBD.md 6.2).
            if (!server.Stopping.IsCancellationRequested || e is not OperationCanceledException)
            {
                server.Report($"{peer}: dropped: {e.Message}");
            }
        }
        finally
        {
            await current.DisposeAsync().ConfigureAwait(false);
            if (!ReferenceEquals(current, transport))
            {
                await transport.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
