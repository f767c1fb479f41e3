using System.Net.Sockets;
using Qed.Image;
using Qed.IO;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd;

/// <summary>
/// An in-process <see cref="NbdServer"/> on a unix socket in a temporary directory, for tests that talk to the server
/// with raw bytes, our client or libnbd's tools. Disposing stops the server, waits for it and fails the test if the
/// server task failed; the device is disposed after the server (need-check cleared).
/// </summary>
public sealed class NbdTestServer : IAsyncDisposable
{
    private readonly CancellationTokenSource stop = new();
    private readonly Socket listener;
    private readonly BlockDevice device;
    private readonly Task running;

    private NbdTestServer(string socketPath, BlockDevice device, NbdServer server)
    {
        SocketPath = socketPath;
        this.device = device;
        Server = server;
        listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(128);
        running = Task.Run(() => server.RunAsync([listener], stop.Token));
    }

    /// <summary>The unix socket the server listens on.</summary>
    public string SocketPath { get; }

    /// <summary>The server, for its options and connection count.</summary>
    public NbdServer Server { get; }

    /// <summary>The libnbd / qemu URI of export <paramref name="name"/> (the default export when empty).</summary>
    public string Uri(string name = "") => $"nbd+unix:///{name}?socket={SocketPath}";

    /// <summary>
    /// Serves <paramref name="imagePath"/> (opened with the format probed, writable unless <paramref name="readOnly"/>)
    /// as export <paramref name="exportName"/>; <paramref name="configure"/> adjusts the export and the options
    /// (persistent and 16 connections by default, so that tests may connect many times).
    /// </summary>
    public static NbdTestServer Start(
        string directory,
        string imagePath,
        string exportName = "",
        bool readOnly = false,
        Func<NbdExport, NbdExport>? configureExport = null,
        Func<NbdServerOptions, NbdServerOptions>? configureOptions = null)
    {
        var device = DiskImage.Open(imagePath, null, new ImageOpenOptions { ReadOnly = readOnly });
        var export = new NbdExport(exportName, device) { ReadOnly = readOnly };
        export = configureExport?.Invoke(export) ?? export;
        var options = new NbdServerOptions { Persistent = true, MaxConnections = 16 };
        options = configureOptions?.Invoke(options) ?? options;
        string socketPath = Path.Combine(directory, "nbd-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        return new NbdTestServer(socketPath, device, new NbdServer(export, options));
    }

    /// <summary>A connected socket to the server, before the greeting is read.</summary>
    public Socket Connect()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(SocketPath));
        return socket;
    }

    public async ValueTask DisposeAsync()
    {
        stop.Cancel();
        try
        {
            await running.WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            listener.Dispose();
            await device.DisposeAsync();
            stop.Dispose();
            File.Delete(SocketPath);
        }
    }
}
