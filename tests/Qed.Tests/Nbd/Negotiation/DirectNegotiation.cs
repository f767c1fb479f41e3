using System.Net.Sockets;
using Qed.Image;
using Qed.IO;
using Qed.Nbd.Server;
using Qed.Nbd.Transport;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>
/// <see cref="NbdNegotiation.NegotiateAsync"/> run on its own over a connected unix socket pair, so that a test sees
/// the <see cref="NbdSession"/> the handshake settled (the server would hand it to the transmission phase), with as
/// many exports as it likes and a stop signal of its own.
/// </summary>
internal sealed class DirectNegotiation : IAsyncDisposable
{
    private readonly SocketTransport serverTransport;
    private readonly List<BlockDevice> devices;

    private DirectNegotiation(RawNbdClient client, SocketTransport serverTransport, Task<NbdSession?> result, List<BlockDevice> devices)
    {
        Client = client;
        this.serverTransport = serverTransport;
        Result = result;
        this.devices = devices;
    }

    public RawNbdClient Client { get; }

    /// <summary>The handshake's outcome: the session, null (ABORT, client gone), or the exception of a drop; disposing rethrows it.</summary>
    public Task<NbdSession?> Result { get; }

    /// <summary>Exports over fresh QED images named after the exports; <paramref name="configure"/> adjusts each.</summary>
    public static List<BlockDevice> OpenExports(string directory, IEnumerable<string> names, out List<NbdExport> exports, Func<NbdExport, NbdExport>? configure = null)
    {
        var devices = new List<BlockDevice>();
        exports = [];
        foreach (string name in names)
        {
            string path = Path.Combine(directory, $"export-{devices.Count}.qed");
            QedImage.Create(path, new QedCreateOptions { Size = NegotiationImages.Size });
            var device = DiskImage.Open(path);
            devices.Add(device);
            var export = new NbdExport(name, device);
            exports.Add(configure?.Invoke(export) ?? export);
        }
        return devices;
    }

    public static async Task<DirectNegotiation> StartAsync(
        string directory,
        List<BlockDevice> devices,
        IReadOnlyList<NbdExport> exports,
        NbdServerOptions? options = null,
        CancellationToken stopping = default)
    {
        string socketPath = Path.Combine(directory, "direct-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        var clientSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await clientSocket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath)).WaitAsync(RawNbdClient.Timeout);
        var serverSocket = await listener.AcceptAsync().WaitAsync(RawNbdClient.Timeout);
        File.Delete(socketPath);

        var context = new NbdServerContext(exports, options ?? new NbdServerOptions(), stopping);
        var transport = new SocketTransport(serverSocket);
        // The handshake token stays uncancelled: the tests look at what the negotiation itself does with Stopping.
        var result = Task.Run(async () =>
        {
            NbdSession? session = null;
            try
            {
                session = await NbdNegotiation.NegotiateAsync(transport, context, CancellationToken.None);
                return session;
            }
            finally
            {
                if (session is null)
                {
                    await transport.DisposeAsync(); // what NbdConnection does with a client the handshake did not keep
                }
            }
        });
        return new DirectNegotiation(new RawNbdClient(clientSocket), transport, result, devices);
    }

    /// <summary>Waits for the handshake to end (with a timeout) and returns its session.</summary>
    public Task<NbdSession?> SessionAsync() => Result.WaitAsync(RawNbdClient.Timeout);

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        try
        {
            var session = await Result.WaitAsync(RawNbdClient.Timeout);
            if (session is not null)
            {
                await session.Transport.DisposeAsync();
            }
        }
        finally
        {
            await serverTransport.DisposeAsync();
            foreach (var device in devices)
            {
                await device.DisposeAsync();
            }
        }
    }
}
