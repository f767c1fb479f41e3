using Qed.Image;
using Qed.IO;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>Each command against a QED image through the transmission loop, with structured and simple replies.</summary>
public sealed class TransmissionCommandTests
{
    private const long MiB = 1024 * 1024;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Write_then_read_returns_the_data_in_both_reply_modes(bool structured)
    {
        using var dir = new TempDirectory();
        await using var device = CreateQed(dir, 16 * MiB);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), structured);
        var client = loop.Client;

        // Small (run on the reader), large (dispatched, several pooled segments), unaligned, and FUA.
        foreach (var (offset, length, flags) in new (ulong, int, ushort)[] { (4096, 4096, 0), (1 * MiB, 3 * (int)MiB + 4097, 0), (513, 1000, 0), (8 * MiB, 65536, NbdCommandFlags.Fua) })
        {
            byte[] data = Pattern(length, (byte)offset);
            Assert.Equal(0u, client.Call(NbdCommand.Write, offset, (uint)length, flags, data).Error);
            var read = client.Call(NbdCommand.Read, offset, (uint)length);
            Assert.Equal(0u, read.Error);
            Assert.Equal(data, read.Data);
        }

        // Unwritten space reads as zeros; simple replies carry the data after the header.
        var zeros = client.Call(NbdCommand.Read, 12 * MiB, 8192);
        Assert.Equal(new byte[8192], zeros.Data);
        Assert.Equal(structured, zeros.Structured);
    }

    [Fact]
    public async Task Structured_read_reports_holes_and_data_and_DF_sends_one_data_chunk()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x61 64k 64k", "write -z 192k 64k");
        await using var device = DiskImage.Open(image);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        var read = client.Call(NbdCommand.Read, 0, 256 * 1024);
        Assert.Equal(0u, read.Error);
        Assert.Equal(
            [(NbdChunk.TypeOffsetHole, 0UL, 65536L), (NbdChunk.TypeOffsetData, 65536UL, 65536L), (NbdChunk.TypeOffsetHole, 131072UL, 131072L)],
            read.Chunks);
        WireClient.AssertFilled(read.Data!.AsSpan(65536, 65536), 0x61);
        WireClient.AssertFilled(read.Data!.AsSpan(131072), 0);

        var df = client.Call(NbdCommand.Read, 0, 256 * 1024, NbdCommandFlags.Df);
        Assert.Equal([(NbdChunk.TypeOffsetData, 0UL, 262144L)], df.Chunks);
        Assert.Equal(read.Data, df.Data);

        // A read inside one data cluster is one data chunk.
        var inside = client.Call(NbdCommand.Read, 65536 + 512, 4096);
        Assert.Equal([(NbdChunk.TypeOffsetData, 66048UL, 4096L)], inside.Chunks);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Zero_length_requests_and_flush_with_a_range_succeed(bool structured)
    {
        using var dir = new TempDirectory();
        await using var device = CreateQed(dir, 4 * MiB);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), structured);
        var client = loop.Client;

        var read = client.Call(NbdCommand.Read, 4096, 0);
        Assert.Equal(0u, read.Error);
        Assert.Equal(0u, client.Call(NbdCommand.Write, 4096, 0).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Read, (ulong)(4 * MiB), 0).Error); // at the very end: still inside
        Assert.Equal(0u, client.Call(NbdCommand.Flush, 12345, 678).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Flush, 0, 0, NbdCommandFlags.Fua).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Cache, 0, (uint)MiB).Error);
        Assert.Equal(0u, client.Call(NbdCommand.Trim, 0, 0).Error);
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 0, 0).Error);
    }

    [Theory]
    [InlineData(NbdDiscardMode.Ignore)]
    [InlineData(NbdDiscardMode.Unmap)]
    public async Task Trim_follows_the_discard_mode(NbdDiscardMode mode)
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "8G");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x5a 0 1M", "write -P 0x5b 6G 64k");
        await using var inner = DiskImage.Open(image);
        await using var device = new ScriptedDevice(inner);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device) { Discard = mode });
        var client = loop.Client;

        // Ignore: nothing touched, not even a flush for FUA. Unmap: the engine frees the space (reads as zeros), FUA flushes.
        Assert.Equal(0u, client.Call(NbdCommand.Trim, 0, (uint)MiB, NbdCommandFlags.Fua).Error);
        Assert.Equal(mode == NbdDiscardMode.Ignore ? 0 : 1, device.Flushes);
        var read = client.Call(NbdCommand.Read, 0, 4096);
        WireClient.AssertFilled(read.Data!, (byte)(mode == NbdDiscardMode.Ignore ? 0x5a : 0));

        // A trim just below 4 GiB (the kernel's largest) is metadata work, not data work (NBD.md 6.2).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0u, client.Call(NbdCommand.Trim, 4 * 1024 * MiB, uint.MaxValue - 511).Error);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"a 4 GiB trim took {clock.Elapsed}");
        var kept = client.Call(NbdCommand.Read, 6 * 1024 * MiB, 4096);
        WireClient.AssertFilled(kept.Data!, (byte)(mode == NbdDiscardMode.Ignore ? 0x5b : 0));
    }

    [Fact]
    public async Task Write_zeroes_honours_no_hole_fua_and_fast_zero_and_takes_huge_lengths()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "512M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x11 0 4M");
        await using var inner = DiskImage.Open(image);
        await using var device = new ScriptedDevice(inner);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        // NO_HOLE: the space must stay allocated; without it the device may unmap. FUA: flushed before the reply.
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 0, (uint)MiB, NbdCommandFlags.NoHole | NbdCommandFlags.Fua).Error);
        Assert.False(device.LastMayUnmap);
        Assert.Equal(1, device.Flushes);
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 2 * MiB, (uint)MiB).Error);
        Assert.True(device.LastMayUnmap);
        Assert.Equal(1, device.Flushes);
        Assert.Equal(new byte[MiB], client.Call(NbdCommand.Read, 0, (uint)MiB).Data);
        Assert.Equal(new byte[MiB], client.Call(NbdCommand.Read, 2 * MiB, (uint)MiB).Data);
        WireClient.AssertFilled(client.Call(NbdCommand.Read, MiB, 4096).Data!, 0x11);

        // QED zeroes by metadata: FAST_ZERO is honoured. nbdcopy sends 128 MiB zero requests.
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 3 * MiB, 4096, NbdCommandFlags.FastZero).Error);
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 64 * MiB, (uint)(128 * MiB)).Error);
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 200 * MiB, (uint)(300 * MiB), NbdCommandFlags.NoHole).Error);
        WireClient.AssertFilled(client.Call(NbdCommand.Read, 3 * MiB, 8192).Data!.AsSpan(4096), 0x11);
        Assert.Equal(new byte[4096], client.Call(NbdCommand.Read, 3 * MiB, 4096).Data);
    }

    [Fact]
    public async Task Fast_zero_on_a_device_without_cheap_zeroing_is_refused_quickly_without_change()
    {
        using var dir = new TempDirectory();
        await using var inner = CreateQed(dir, 4 * MiB);
        inner.Write(Pattern(65536, 3), 0);
        await using var device = new ScriptedDevice(inner) { ClaimedCapabilities = BlockDeviceCapabilities.Write };
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device));
        var client = loop.Client;

        var reply = client.Call(NbdCommand.WriteZeroes, 0, 65536, NbdCommandFlags.FastZero);
        Assert.Equal(NbdError.NotSup, reply.Error);
        Assert.Equal(0, device.ZeroCalls);
        Assert.Equal(Pattern(65536, 3), client.Call(NbdCommand.Read, 0, 65536).Data);

        // Without FAST_ZERO the same request zeroes.
        Assert.Equal(0u, client.Call(NbdCommand.WriteZeroes, 0, 65536).Error);
        Assert.Equal(new byte[65536], client.Call(NbdCommand.Read, 0, 65536).Data);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Engine_failures_become_EIO_or_ENOSPC_and_the_connection_stays(bool structured)
    {
        using var dir = new TempDirectory();
        await using var inner = CreateQed(dir, 4 * MiB);
        await using var device = new ScriptedDevice(inner);
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device), structured);
        var client = loop.Client;

        device.Failure = new IOException("injected read failure");
        foreach (uint length in new uint[] { 4096, 1 << 20 }) // inline and dispatched
        {
            var read = client.Call(NbdCommand.Read, 0, length);
            Assert.Equal(NbdError.Io, read.Error);
            Assert.Null(read.Data);
            if (structured)
            {
                Assert.Contains("injected read failure", read.Message, StringComparison.Ordinal);
            }
        }

        device.Failure = new IOException("No space left on device", 28);
        Assert.Equal(NbdError.NoSpc, client.Call(NbdCommand.Write, 0, 4096, 0, new byte[4096]).Error);
        Assert.Equal(NbdError.NoSpc, client.Call(NbdCommand.WriteZeroes, 0, 4096, NbdCommandFlags.Fua).Error);
        device.Failure = new QedCorruptionException("bad L2 table");
        Assert.Equal(NbdError.Io, client.Call(NbdCommand.Flush, 0, 0).Error);
        Assert.Equal(structured ? NbdError.Io : NbdError.Inval, client.Call(NbdCommand.BlockStatus, 0, 4096).Error); // simple replies: no context, EINVAL first

        device.Failure = null;
        Assert.Equal(0u, client.Call(NbdCommand.Read, 0, 4096).Error);
        Assert.NotEmpty(loop.Reports); // the operator hears of failures the client only sees as an errno
    }

    [Fact]
    public void Disk_full_is_recognised_from_the_real_errno()
    {
        // /dev/full fails every write with ENOSPC: the exception .NET makes of it must map to ENOSPC.
        using var handle = File.OpenHandle("/dev/full", FileMode.Open, FileAccess.Write);
        var failure = Assert.ThrowsAny<IOException>(() => RandomAccess.Write(handle, new byte[512], 0));
        Assert.Equal(NbdError.NoSpc, Qed.Nbd.Server.Transmission.RequestErrors.From(failure));
        Assert.Equal(NbdError.Io, Qed.Nbd.Server.Transmission.RequestErrors.From(new IOException("other")));
        Assert.Equal(NbdError.Perm, Qed.Nbd.Server.Transmission.RequestErrors.From(new QedReadOnlyException("ro")));
    }

    internal static BlockDevice CreateQed(TempDirectory dir, long size)
    {
        string image = dir.File("disk-" + Guid.NewGuid().ToString("N")[..6] + ".qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return DiskImage.Open(image);
    }

    internal static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i++)
        {
            data[i] = (byte)((i * 31) + seed + (i >> 12));
        }

        return data;
    }
}
