using System.Diagnostics;
using System.Net.Sockets;
using Qed.Image;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// The corners: latency at depth 2 over TCP (NBD.md 8.4), fragmented READs, an export whose size is not a multiple of
/// 512, a request larger than the byte budget, a client vanishing mid-payload, and a stop while the client reads nothing.
/// </summary>
public sealed class TransmissionEdgeTests(ITestOutputHelper output)
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public async Task Depth_two_over_tcp_does_not_stall()
    {
        // qemu-nbd 7.2 stalls ~17 ms per request here; 2000 requests would take half a minute.
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 16 * MiB);
        device.Write(TransmissionCommandTests.Pattern((int)MiB, 3), 0);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), tcp: true);
        var client = loop.Client;

        const int Requests = 2000;
        var clock = Stopwatch.StartNew();
        client.Send(NbdCommand.Read, 0, 4096);
        for (int i = 1; i < Requests; i++)
        {
            client.Send(NbdCommand.Read, (ulong)(i % 256) * 4096, 4096);
            Assert.Equal(0u, client.Receive().Error);
        }

        Assert.Equal(0u, client.Receive().Error);
        output.WriteLine($"{Requests} reads at depth 2 over TCP in {clock.ElapsedMilliseconds} ms");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"{Requests} requests at depth 2 took {clock.Elapsed}");
    }

    [Fact]
    public async Task Fragmented_reads_alternate_chunks_up_to_a_limit_then_go_as_one_data_chunk()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "16M");
        // Every other 64 KiB cluster written: 128 data/hole alternations in 16 MiB.
        Tools.QemuIo(dir.Path, "qed", image, [.. Enumerable.Range(0, 128).Select(i => $"write -P 0x{(i % 200) + 1:x2} {i * 128 * 1024} 64k")]);
        await using var device = DiskImage.Open(image);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        // From mid-cluster: 64 runs (32 data, 32 holes) alternate; one cluster more is 65 runs, past the limit.
        var small = client.Call(NbdCommand.Read, 32768, (uint)(4 * MiB) - 65536);
        Assert.Equal(64, small.Chunks.Count);
        Assert.All(small.Chunks, c => Assert.True(c.Type == (c.Offset / 65536 % 2 == 0 ? NbdChunk.TypeOffsetData : NbdChunk.TypeOffsetHole), $"chunk at {c.Offset}"));
        var over = client.Call(NbdCommand.Read, 32768, (uint)(4 * MiB));
        Assert.Equal([(NbdChunk.TypeOffsetData, 32768UL, 4 * MiB)], over.Chunks);

        var large = client.Call(NbdCommand.Read, 0, (uint)(16 * MiB)); // 256 runs: too many, one data chunk
        Assert.Equal([(NbdChunk.TypeOffsetData, 0UL, 16 * MiB)], large.Chunks);
        for (int i = 0; i < 128; i++)
        {
            WireClient.AssertFilled(large.Data!.AsSpan(i * 128 * 1024, 65536), (byte)((i % 200) + 1));
            WireClient.AssertFilled(large.Data!.AsSpan((i * 128 * 1024) + 65536, 65536), 0);
        }

        Assert.Equal(large.Data.AsSpan(32768, (int)(4 * MiB) - 65536).ToArray(), small.Data);
        Assert.Equal(large.Data.AsSpan(32768, (int)(4 * MiB)).ToArray(), over.Data);
    }

    [Fact]
    public async Task Large_reads_sent_from_the_image_files_carry_the_right_data()
    {
        // Fully allocated ranges of 64 KiB or more go from the file to the socket (FileRangeSender): from the overlay,
        // from its raw backing file, larger than the socket takes at once (the rest is copied), right after a write.
        using var dir = new TempDirectory();
        string backing = dir.File("base.raw");
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "raw", backing, "64M");
        Tools.QemuIo(dir.Path, "raw", backing, "write -P 0x31 0 20M");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", backing, "-F", "raw", image, "64M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x42 32M 24M");
        await using var device = DiskImage.Open(image);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        var fromBacking = client.Call(NbdCommand.Read, 1 * MiB, (uint)(16 * MiB));
        Assert.Equal([(NbdChunk.TypeOffsetData, (ulong)MiB, 16 * MiB)], fromBacking.Chunks);
        WireClient.AssertFilled(fromBacking.Data!, 0x31);
        var fromOverlay = client.Call(NbdCommand.Read, (ulong)(33 * MiB), (uint)(20 * MiB) + 4096);
        WireClient.AssertFilled(fromOverlay.Data!, 0x42);

        var data = TransmissionCommandTests.Pattern((int)(2 * MiB), 77);
        Assert.Equal(0u, client.Call(NbdCommand.Write, (ulong)(40 * MiB), (uint)data.Length, 0, data).Error);
        Assert.Equal(data, client.Call(NbdCommand.Read, (ulong)(40 * MiB), (uint)data.Length).Data);

        // Many at once, interleaved with small replies: every reply stays whole.
        var expected = new Dictionary<ulong, byte>();
        for (int i = 0; i < 24; i++)
        {
            ulong at = (ulong)(i % 2 == 0 ? 2 * MiB : 48 * MiB) + ((ulong)i * 65536);
            expected[client.Send(NbdCommand.Read, at, i % 3 == 0 ? 4096u : 1u << 20)] = i % 2 == 0 ? (byte)0x31 : (byte)0x42;
        }

        for (int i = 0; i < 24; i++)
        {
            var reply = client.Receive();
            WireClient.AssertFilled(reply.Data!, (byte)(expected[reply.Cookie]));
        }
    }

    [Fact]
    public async Task An_export_of_odd_size_is_served_to_its_last_byte()
    {
        using var dir = new TempDirectory();
        string image = dir.File("odd.raw");
        const long Size = 1_000_001;
        using (var handle = File.OpenHandle(image, FileMode.CreateNew, FileAccess.Write))
        {
            RandomAccess.SetLength(handle, Size);
            RandomAccess.Write(handle, TransmissionCommandTests.Pattern(4097, 9), Size - 4097);
        }

        await using var device = DiskImage.Open(image, "raw");
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        Assert.Equal(TransmissionCommandTests.Pattern(4097, 9), client.Call(NbdCommand.Read, (ulong)(Size - 4097), 4097).Data);
        Assert.Equal(NbdError.Inval, client.Call(NbdCommand.Read, (ulong)(Size - 4096), 4097).Error);
        var status = client.Call(NbdCommand.BlockStatus, 0, (uint)Size).Status[LoopHarness.BaseContext];
        Assert.Equal(Size, status.Sum(e => (long)e.Length));
        Assert.Equal(0u, status[^1].Flags); // the data at the end
        Assert.Equal(NbdChunk.StateHole | NbdChunk.StateZero, status[0].Flags); // a hole of the raw file
        Assert.Equal(0u, client.Call(NbdCommand.Write, (ulong)(Size - 1), 1, 0, [0x7f]).Error);
        Assert.Equal(NbdError.NoSpc, client.Call(NbdCommand.Write, (ulong)Size, 1, 0, [0x7f]).Error);
    }

    [Fact]
    public async Task A_request_larger_than_the_byte_budget_runs_alone()
    {
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 16 * MiB);
        var data = TransmissionCommandTests.Pattern((int)(4 * MiB), 1);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), configure: o => o with { MaxBufferedBytesPerConnection = 64 * 1024 });
        var client = loop.Client;

        client.Send(NbdCommand.Write, 0, (uint)data.Length, 0, data);
        client.Send(NbdCommand.Read, 0, (uint)data.Length);
        client.Send(NbdCommand.Read, MiB, 65536);
        Assert.Equal(0u, client.Receive().Error);
        var read = client.Receive();
        Assert.Equal(data, read.Data);
        Assert.Equal(data.AsSpan((int)MiB, 65536).ToArray(), client.Receive().Data);
        Assert.Equal(1, loop.Statistics.PeakInFlight); // each of them needed the whole budget: one at a time
    }

    [Fact]
    public async Task A_client_vanishing_mid_payload_ends_only_its_connection()
    {
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 16 * MiB);
        await using var other = LoopHarness.Start(dir.Path, new NbdExport("", device));
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));

        var partial = new byte[NbdTransmission.RequestSize + 1000];
        NbdTransmission.WriteRequest(partial, new NbdRequest(0, NbdCommand.Write, 1, 0, 65536));
        loop.Client.SendAll(partial);
        loop.Client.Socket.Shutdown(SocketShutdown.Both);
        var failure = await loop.WaitForLoopAsync();
        Assert.IsType<EndOfStreamException>(failure);
        Assert.Equal(0, loop.Statistics.InFlight);
        Assert.Equal(0u, other.Client.Call(NbdCommand.Read, 0, 65536).Error);
        Assert.Equal(new byte[65536], other.Client.Call(NbdCommand.Read, 0, 65536).Data); // nothing of the partial write landed
    }

    [Fact]
    public async Task Stopping_abandons_replies_a_client_never_reads_after_the_grace()
    {
        using var dir = new TempDirectory();
        await using var device = TransmissionCommandTests.CreateQed(dir, 16 * MiB);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), stopGrace: TimeSpan.FromMilliseconds(300));
        var client = loop.Client;
        for (int i = 0; i < 64; i++)
        {
            client.Send(NbdCommand.Read, 0, 1 << 20, NbdCommandFlags.Df); // 64 MiB of replies: more than the socket holds
        }

        await Task.Delay(200);
        var clock = Stopwatch.StartNew();
        loop.Stop();
        var failure = await loop.WaitForLoopAsync();
        output.WriteLine($"returned {clock.ElapsedMilliseconds} ms after the stop: {failure?.GetType().Name} {failure?.Message}");
        Assert.True(failure is null or OperationCanceledException or IOException or SocketException, $"{failure}");
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
    }
}
