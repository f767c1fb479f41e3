using System.Net.Sockets;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server;

/// <summary>
/// An NBD server (fixed newstyle, structured replies, block status, TLS) exporting block devices to any NBD client:
/// qemu, libnbd's tools, the Linux kernel, the library's own client.
/// </summary>
/// <remarks>
/// 1. <see cref="RunAsync"/> accepts on each listening socket while fewer than <see cref="NbdServerOptions.MaxConnections"/>
///    clients are connected; further clients wait in the listen backlog, as with qemu-nbd's <c>-e</c>.
/// 2. Each client runs on its own: a handshake under <see cref="NbdServerOptions.HandshakeTimeout"/>, then the
///    transmission phase. A client that fails or misbehaves is dropped alone.
/// 3. Stopping (the token of <see cref="RunAsync"/>): no more accepts, handshakes in progress end, each connection
///    stops reading requests, finishes and answers those already received, and closes. Then RunAsync returns; the
///    caller flushes and closes the devices, which the server never disposes.
/// 4. Without <see cref="NbdServerOptions.Persistent"/>, RunAsync also returns when the last client has left.
/// </remarks>
public sealed class NbdServer
{
    private readonly NbdExport[] exports;
    private readonly NbdServerOptions options;
    private int connectionCount;

    /// <summary>A server for one export.</summary>
    public NbdServer(NbdExport export, NbdServerOptions options)
        : this([export], options)
    {
    }

    /// <summary>A server for several exports; the first answers for the empty (default) name.</summary>
    public NbdServer(IReadOnlyList<NbdExport> exports, NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(exports);
        if (exports.Count == 0)
        {
            throw new ArgumentException("an NBD server needs at least one export", nameof(exports));
        }

        this.exports = [.. exports];
        ArgumentNullException.ThrowIfNull(options);
        this.options = options;
        if (this.options.MaxConnections < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MaxConnections must be at least 1");
        }
    }

    /// <summary>The exports served.</summary>
    public IReadOnlyList<NbdExport> Exports => exports;

    /// <summary>The options the server runs with.</summary>
    public NbdServerOptions Options => options;

    /// <summary>Clients connected now.</summary>
    public int ConnectionCount => Volatile.Read(ref connectionCount);

    /// <summary>
    /// Accepts clients on <paramref name="listeners"/> (bound and listening sockets, unix or TCP) and serves them until
    /// <paramref name="cancellationToken"/> is cancelled or, without <see cref="NbdServerOptions.Persistent"/>, the last
    /// client has left. Every connection is finished and closed before the task completes. The listeners are not closed.
    /// </summary>
    public async Task RunAsync(IReadOnlyList<Socket> listeners, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(listeners);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var context = new NbdServerContext(exports, options, stop.Token);
        using var slots = new SemaphoreSlim(options.MaxConnections, options.MaxConnections);
        var connections = new List<Task>();
        var connectionsLock = new object();
        int served = 0;

        async Task AcceptLoopAsync(Socket listener)
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await slots.WaitAsync(stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                Socket client;
                try
                {
                    client = await listener.AcceptAsync(stop.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
                {
                    slots.Release();
                    if (e is SocketException socketError && !stop.IsCancellationRequested)
                    {
                        context.Report($"accept failed: {socketError.Message}");
                        continue;
                    }

                    return;
                }

                Interlocked.Increment(ref connectionCount);
                Interlocked.Increment(ref served);
                var connection = ServeAcceptedAsync(client, context, () =>
                {
                    slots.Release();
                    if (Interlocked.Decrement(ref connectionCount) == 0 && !options.Persistent)
                    {
                        stop.Cancel(); // the last client left: qemu-nbd without -t exits now
                    }
                });
                lock (connectionsLock)
                {
                    connections.RemoveAll(task => task.IsCompleted);
                    connections.Add(connection);
                }
            }
        }

        var acceptLoops = listeners.Select(AcceptLoopAsync).ToArray();
        await Task.WhenAll(acceptLoops).ConfigureAwait(false);
        Task[] remaining;
        lock (connectionsLock)
        {
            remaining = [.. connections];
        }

        await Task.WhenAll(remaining).ConfigureAwait(false);
    }

    /// <summary>
    /// Serves one already connected client (an accepted socket, or one end of a socket pair) until it leaves or
    /// <paramref name="cancellationToken"/> stops it. Ignores <see cref="NbdServerOptions.MaxConnections"/>.
    /// </summary>
    public async Task ServeClientAsync(Socket client, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var context = new NbdServerContext(exports, options, stop.Token);
        Interlocked.Increment(ref connectionCount);
        await ServeAcceptedAsync(client, context, () => Interlocked.Decrement(ref connectionCount)).ConfigureAwait(false);
    }

    private static async Task ServeAcceptedAsync(Socket client, NbdServerContext context, Action finished)
    {
        await Task.Yield(); // the accept loop goes on at once
        try
        {
            string peer = client.RemoteEndPoint?.ToString() is { Length: > 0 } endPoint ? endPoint : "client";
            await NbdConnection.RunAsync(new SocketTransport(client), context, peer).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            context.Report($"client failed: {e.Message}"); // never let one client's fault end the server
        }
        finally
        {
            finished();
        }
    }
}
