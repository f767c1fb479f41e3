using System.Diagnostics;
using System.Net.Sockets;
using Qed.Image;
using Qed.IO;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// Many requests in flight: pipelined reads answered out of order, DISC after a pipeline of writes, the limits under a
/// client that never reads, a WRITE whose payload never comes, stopping with requests in flight, and the concurrent
/// allocation that crashes qemu-nbd 7.2 (issue 9, point 2).
/// </summary>
public sealed class TransmissionConcurrencyTests(ITestOutputHelper output)
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task Two_hundred_pipelined_reads_are_all_answered_with_their_cookies()
    {
        int seed = TestSeed.For(nameof(Two_hundred_pipelined_reads_are_all_answered_with_their_cookies));
        var random = new Random(seed);
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 64 * MiB);
        byte[] content = TransmissionCommandTests.Pattern((int)(8 * MiB), 7);
        device.Write(content, 0);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        var sent = new Dictionary<ulong, (int Offset, int Length)>();
        for (int i = 0; i < 200; i++)
        {
            int length = random.Next(3) switch { 0 => 4096, 1 => random.Next(1, 70_000), _ => 256 * 1024 + random.Next(4096) };
            int offset = random.Next((int)(8 * MiB) - length);
            sent[client.Send(NbdCommand.Read, (ulong)offset, (uint)length)] = (offset, length);
        }

        var order = new List<ulong>();
        for (int i = 0; i < 200; i++)
        {
            var reply = client.Receive();
            Assert.Equal(0u, reply.Error);
            Assert.True(sent.Remove(reply.Cookie, out var request), $"cookie 0x{reply.Cookie:x} answered twice or never sent");
            Assert.True(content.AsSpan(request.Offset, request.Length).SequenceEqual(reply.Data), $"wrong data for {request.Length} bytes at {request.Offset}");
            order.Add(reply.Cookie);
        }

        Assert.Empty(sent);
        int outOfOrder = order.Zip(order.Skip(1)).Count(p => p.First > p.Second);
        TestSeed.Report($"200 pipelined reads answered; {outOfOrder} answered before an earlier one; {loop.Statistics.RunInline} inline, {loop.Statistics.RunDispatched} dispatched, peak {loop.Statistics.PeakInFlight} in flight");
        Assert.True(loop.Statistics.PeakInFlight > 1, "the server never had two requests in flight");
    }

    [Fact]
    public async Task Disc_after_a_pipeline_answers_every_request_and_keeps_every_acknowledged_write()
    {
        int seed = TestSeed.For(nameof(Disc_after_a_pipeline_answers_every_request_and_keeps_every_acknowledged_write));
        var random = new Random(seed);
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "32M");
        var expected = new byte[32 * MiB];
        var device = DiskImage.Open(image);
        LoopHarness? loop = null;
        try
        {
            loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
            var client = loop.Client;
            int requests = 0;
            for (int i = 0; i < 120; i++)
            {
                switch (random.Next(4))
                {
                    case 0:
                    case 1:
                    {
                        // Writes to disjoint 256 KiB slots, so the expected content does not depend on their order.
                        int length = random.Next(2) == 0 ? 4096 : random.Next(1, 200_000);
                        int offset = (i * 256 * 1024) + random.Next(256 * 1024 - length);
                        var data = TransmissionCommandTests.Pattern(length, (byte)i);
                        data.CopyTo(expected, offset);
                        client.Send(NbdCommand.Write, (ulong)offset, (uint)length, random.Next(4) == 0 ? NbdCommandFlags.Fua : (ushort)0, data);
                        break;
                    }

                    case 2:
                        client.Send(NbdCommand.Read, (ulong)random.Next(30 * (int)MiB), (uint)random.Next(1, 300_000));
                        break;
                    default:
                        client.Send(random.Next(2) == 0 ? NbdCommand.Flush : NbdCommand.BlockStatus, 0, 65536);
                        break;
                }

                requests++;
            }

            client.Send(NbdCommand.Disc, 0, 0);
            for (int i = 0; i < requests; i++)
            {
                Assert.Equal(0u, client.Receive().Error);
            }

            Assert.Equal(0, client.Pending);
            Assert.True(client.WaitForClose(), "the server did not close after DISC");
            Assert.Null(await loop.WaitForLoopAsync());
            TestSeed.Report($"{requests} pipelined requests before DISC, all answered; peak {loop.Statistics.PeakInFlight} in flight");
        }
        finally
        {
            if (loop is not null)
            {
                await loop.DisposeAsync();
            }

            await device.DisposeAsync();
        }

        string raw = dir.File("expected.raw");
        await File.WriteAllBytesAsync(raw, expected);
        Tools.QemuImg(dir.Path, "compare", "-q", "-f", "qed", "-F", "raw", image, raw);
        var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", image);
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    [Theory]
    [InlineData(8, 64 * MiB)] // the request count is the limit
    [InlineData(1000, 1 * MiB)] // the buffered bytes are the limit
    public async Task A_client_that_never_reads_replies_holds_the_server_at_its_limits_and_others_are_served(int maxRequests, long maxBytes)
    {
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 64 * MiB);
        device.Write(TransmissionCommandTests.Pattern((int)(4 * MiB), 1), 0);
        await using var flooded = LoopHarness.Start(dir.Path, new NbdExport("", device),
            configure: o => o with { MaxRequestsInFlight = maxRequests, MaxBufferedBytesPerConnection = maxBytes });
        await using var other = LoopHarness.Start(dir.Path, new NbdExport("", device));

        // 256 KiB READs (data, dispatched) sent without ever reading a reply, until the socket refuses more.
        const uint ReadLength = 256 * 1024;
        var socket = flooded.Client.Socket;
        socket.Blocking = false;
        var request = new byte[NbdTransmission.RequestSize];
        int sent = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(5))
        {
            NbdTransmission.WriteRequest(request, new NbdRequest(0, NbdCommand.Read, (ulong)sent, (ulong)(sent % 8) * ReadLength, ReadLength));
            try
            {
                int n = socket.Send(request);
                Assert.Equal(request.Length, n); // a unix socket takes whole small writes or none
                sent++;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                break;
            }
        }

        // Let the server settle: it must stop taking requests.
        long received;
        do
        {
            received = flooded.Statistics.RequestsReceived;
            await Task.Delay(200);
        }
        while (flooded.Statistics.RequestsReceived != received);

        long limitByBytes = Math.Max(1, maxBytes / ReadLength);
        long cap = Math.Min(maxRequests, limitByBytes);
        output.WriteLine($"sent {sent} requests; the server took {received}, peak {flooded.Statistics.PeakInFlight} in flight, peak {flooded.Statistics.PeakHeldBytes} bytes held");
        Assert.True(sent > received + 100, $"the client could send only {sent} requests: the test did not flood");
        Assert.Equal(cap, flooded.Statistics.PeakInFlight);
        Assert.True(flooded.Statistics.PeakHeldBytes <= Math.Max(maxBytes, ReadLength), $"held {flooded.Statistics.PeakHeldBytes} bytes");
        // What the server took beyond the cap is only what the kernel's socket buffers hold: the server asks for 1 MiB on
        // unix sockets (FileRangeSender), a few of these replies.
        Assert.InRange(received, cap, cap + 64);

        // Another client of the same device is served normally meanwhile.
        var data = TransmissionCommandTests.Pattern(65536, 9);
        Assert.Equal(0u, other.Client.Call(NbdCommand.Write, (ulong)(8 * MiB), 65536, 0, data).Error);
        Assert.Equal(data, other.Client.Call(NbdCommand.Read, (ulong)(8 * MiB), 65536).Data);
        Assert.Equal(flooded.Statistics.RequestsReceived, received);
    }

    [Fact]
    public async Task A_write_whose_payload_never_comes_is_dropped_when_idle()
    {
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 4 * MiB);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), configure: o => o with { IdleTimeout = TimeSpan.FromMilliseconds(300) });
        var client = loop.Client;
        Assert.Equal(0u, client.Call(NbdCommand.Read, 0, 4096).Error);

        var header = new byte[NbdTransmission.RequestSize + 100];
        NbdTransmission.WriteRequest(header, new NbdRequest(0, NbdCommand.Write, 1, 0, 65536));
        var clock = Stopwatch.StartNew();
        client.SendAll(header);
        Assert.True(client.WaitForClose(), "the server kept a client that went silent in the middle of a WRITE");
        Assert.Null(await loop.WaitForLoopAsync());
        output.WriteLine($"dropped after {clock.ElapsedMilliseconds} ms; reports: {string.Join(" | ", loop.Reports)}");
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        Assert.Contains(loop.Reports, r => r.Contains("idle", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_busy_client_is_not_idle_and_stopping_ends_a_payload_that_never_comes()
    {
        using var dir = new TempDirectory();
        await using var inner = TransmissionCommandTests.CreateQed(dir, 4 * MiB);
        await using var device = new ScriptedDevice(inner);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), configure: o => o with { IdleTimeout = TimeSpan.FromMilliseconds(200) });
        var client = loop.Client;

        // A FLUSH held in the device for longer than the idle timeout: not idle, the connection stays.
        device.Gate = new SemaphoreSlim(0);
        ulong flush = client.Send(NbdCommand.Flush, 0, 0);
        await Task.Delay(600);
        device.Gate.Release();
        Assert.Equal(flush, client.Receive().Cookie);
        device.Gate = null;

        var header = new byte[NbdTransmission.RequestSize + 10];
        NbdTransmission.WriteRequest(header, new NbdRequest(0, NbdCommand.Write, 2, 0, 4096));
        client.SendAll(header);
        await Task.Delay(50);
        loop.Stop();
        Assert.True(client.WaitForClose(), "stopping did not end the connection");
        Assert.Null(await loop.WaitForLoopAsync());
    }

    [Fact]
    public async Task Stopping_finishes_and_answers_the_requests_in_flight()
    {
        using var dir = new TempDirectory();
        await using var inner = TransmissionCommandTests.CreateQed(dir, 4 * MiB);
        await using var device = new ScriptedDevice(inner) { Gate = new SemaphoreSlim(0) };
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        var data = TransmissionCommandTests.Pattern(65536, 5);
        var cookies = new HashSet<ulong>
        {
            client.Send(NbdCommand.Write, 0, 65536, NbdCommandFlags.Fua, data),
            client.Send(NbdCommand.Flush, 0, 0),
            client.Send(NbdCommand.Read, 0, 1 << 20),
        };
        // All three received before the stop (a request still unread in the socket is not in flight: the close drops
        // it and resets the connection), and two of them held in the device.
        var clock = Stopwatch.StartNew();
        while ((device.Started < 2 || loop.Statistics.RequestsReceived < 3) && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(10);
        }
        Assert.Equal(3, loop.Statistics.RequestsReceived);

        loop.Stop();
        await Task.Delay(100);
        Assert.False(loop.Loop.IsCompleted, "the loop returned with requests in flight");
        device.Gate.Release();
        for (int i = 0; i < 3; i++)
        {
            var reply = client.Receive();
            Assert.Equal(0u, reply.Error);
            Assert.True(cookies.Remove(reply.Cookie));
        }

        Assert.Null(await loop.WaitForLoopAsync());
        var written = new byte[65536];
        inner.Read(written, 0);
        Assert.Equal(data, written);
    }

    [Fact]
    public async Task Zeroing_part_of_a_cluster_while_allocating_writes_are_in_flight_matches_qemu_io()
    {
        // Issue 9, point 2: on a fresh 24 MiB QED image, six pipelined requests where allocating WRITEs are in flight and
        // a WRITE_ZEROES starts part-way into a cluster abort qemu-nbd 7.2 ('s->allocating_acb == NULL'). Requests touch
        // disjoint ranges, so applying them in order with qemu-io gives the one right content.
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        string oracle = dir.File("oracle.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "24M");
        File.Copy(image, oracle);
        var sequence = new (ushort Command, long Offset, int Length, byte Fill)[]
        {
            (NbdCommand.Write, 0, (int)MiB, 0xa1),
            (NbdCommand.Write, 2 * MiB, 512 * 1024, 0xa2),
            (NbdCommand.WriteZeroes, MiB + 4096, (int)MiB - 4096, 0),
            (NbdCommand.Write, 4 * MiB + 32768, 100_000, 0xa3),
            (NbdCommand.WriteZeroes, 6 * MiB + 512, 3 * (int)MiB, 0),
            (NbdCommand.Write, 10 * MiB, 2 * (int)MiB, 0xa4),
        };

        for (int round = 0; round < 3; round++)
        {
            string target = round == 0 ? image : dir.File($"round{round}.qed");
            if (round > 0)
            {
                Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", target, "24M");
            }

            var device = DiskImage.Open(target);
            try
            {
                await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
                var client = loop.Client;
                foreach (var (command, offset, length, fill) in sequence)
                {
                    byte[] payload = command == NbdCommand.Write ? Enumerable.Repeat(fill, length).ToArray() : [];
                    client.Send(command, (ulong)offset, (uint)length, 0, payload);
                }

                client.Send(NbdCommand.Disc, 0, 0);
                for (int i = 0; i < sequence.Length; i++)
                {
                    var reply = client.Receive();
                    Assert.True(reply.Error == 0, $"request 0x{reply.Cookie:x} failed: {reply.Error} {reply.Message}");
                }

                Assert.Null(await loop.WaitForLoopAsync());
            }
            finally
            {
                await device.DisposeAsync();
            }

            var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", target);
            Assert.True(check.ExitCode == 0, $"round {round}: {check}");
            if (round == 0)
            {
                Tools.QemuIo(dir.Path, "qed", oracle, [.. sequence.Select(r => r.Command == NbdCommand.Write ? $"write -P 0x{r.Fill:x2} {r.Offset} {r.Length}" : $"write -z {r.Offset} {r.Length}")]);
            }

            var compare = Tools.QemuImgRaw(dir.Path, "compare", "-f", "qed", "-F", "qed", target, oracle);
            Assert.True(compare.ExitCode == 0, $"round {round}: {compare}");
        }
    }
}
