using System.Collections.Concurrent;
using System.Net.Sockets;
using Qed.IO;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Nbd.Server.Transmission;
using Qed.Nbd.Transport;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// <see cref="NbdTransmissionLoop.RunAsync(NbdSession, NbdServerContext, CancellationToken, TransmissionStatistics)"/>
/// on one end of a connected unix socket pair, without a handshake: the session is made here as negotiation would make
/// it. The other end is a <see cref="WireClient"/>. Disposing closes the client, stops the loop and waits for it.
/// </summary>
internal sealed class LoopHarness : IAsyncDisposable
{
    public const uint BaseContext = 7;
    public const uint DepthContext = 9;

    /// <summary>What qemu-nbd advertises for a writable export with structured replies (NBD.md 2.5: 0x0ded).</summary>
    public const ushort WritableFlags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.SendFua
        | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendDf | NbdTransmissionFlags.CanMultiConn
        | NbdTransmissionFlags.SendCache | NbdTransmissionFlags.SendFastZero;

    /// <summary>A read-only export: no TRIM/WRITE_ZEROES (NBD.md 3.3).</summary>
    public const ushort ReadOnlyFlags = NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.ReadOnly | NbdTransmissionFlags.SendFlush
        | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendDf | NbdTransmissionFlags.CanMultiConn | NbdTransmissionFlags.SendCache;

    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(15);
    private readonly CancellationTokenSource _stop;

    private LoopHarness(WireClient client, Task loop, TransmissionStatistics statistics, CancellationTokenSource stop, ConcurrentQueue<string> reports)
    {
        Client = client;
        Loop = loop;
        Statistics = statistics;
        _stop = stop;
        Reports = reports;
    }

    public WireClient Client { get; }

    public Task Loop { get; }

    public TransmissionStatistics Statistics { get; }

    public ConcurrentQueue<string> Reports { get; }

    /// <summary>Starts a loop serving <paramref name="export"/>.</summary>
    public static LoopHarness Start(
        string directory,
        NbdExport export,
        bool structured = true,
        ushort? flags = null,
        bool baseAllocation = true,
        bool allocationDepth = false,
        Func<NbdServerOptions, NbdServerOptions>? configure = null,
        CancellationTokenSource? stop = null,
        bool tcp = false,
        TimeSpan? stopGrace = null)
    {
        Socket client;
        Socket server;
        if (tcp)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            listener.Listen(1);
            client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.Connect(listener.LocalEndPoint!);
            server = listener.Accept();
        }
        else
        {
            string path = Path.Combine(directory, "loop-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(1);
            client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            client.Connect(new UnixDomainSocketEndPoint(path));
            server = listener.Accept();
            File.Delete(path);
        }

        var reports = new ConcurrentQueue<string>();
        var options = new NbdServerOptions { Diagnostics = reports.Enqueue };
        options = configure?.Invoke(options) ?? options;
        stop ??= new CancellationTokenSource();
        var context = new NbdServerContext([export], options, stop.Token);
        ushort transmissionFlags = flags ?? (export.IsReadOnly ? ReadOnlyFlags : WritableFlags);
        if (!structured)
        {
            transmissionFlags &= unchecked((ushort)~NbdTransmissionFlags.SendDf);
        }

        var session = new NbdSession(new SocketTransport(server), export, transmissionFlags)
        {
            StructuredReplies = structured,
            BaseAllocationContextId = structured && baseAllocation ? BaseContext : 0,
            AllocationDepthContextId = structured && allocationDepth ? DepthContext : 0,
        };
        var statistics = new TransmissionStatistics();
        var loop = Task.Run(async () =>
        {
            try
            {
                await NbdTransmissionLoop.RunAsync(session, context, stop.Token, statistics, stopGrace);
            }
            finally
            {
                await session.Transport.DisposeAsync();
            }
        });
        return new LoopHarness(new WireClient(client, structured, s_timeout), loop, statistics, stop, reports);
    }

    /// <summary>Waits for the loop to end and returns what it threw (null when it returned).</summary>
    public async Task<Exception?> WaitForLoopAsync()
    {
        try
        {
            await Loop.WaitAsync(s_timeout);
            return null;
        }
        catch (TimeoutException)
        {
            throw;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    public void Stop() => _stop.Cancel();

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        _stop.Cancel();
        try
        {
            await Loop.WaitAsync(s_timeout);
        }
        catch (Exception e) when (e is IOException or SocketException or NbdProtocolException or OperationCanceledException)
        {
            // A test that broke the stream on purpose sees the loop end this way.
        }
        finally
        {
            _stop.Dispose();
        }
    }
}
