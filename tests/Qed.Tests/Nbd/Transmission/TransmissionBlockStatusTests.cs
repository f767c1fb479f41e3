using Qed.Image;
using Qed.Nbd.Protocol;
using Qed.Nbd.Server;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Transmission;

/// <summary>
/// BLOCK_STATUS through the loop: base:allocation flattened through the backing chain and qemu:allocation-depth, on the
/// overlay of NBD.md 4.1, against the documented map and against qemu-nbd serving a copy of the same image.
/// </summary>
public sealed class TransmissionBlockStatusTests(ITestOutputHelper output)
{
    private const long MiB = 1024 * 1024;
    private const long Size = 16 * MiB;

    [Fact]
    public async Task Base_allocation_is_the_documented_flattened_map_and_matches_qemu_nbd()
    {
        using var dir = new TempDirectory();
        string image = CreateOverlay(dir);
        string copy = Copy(dir, image);
        await using var device = DiskImage.Open(image, null, new ImageOpenOptions { ReadOnly = true });
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device) { ReadOnly = true });
        using var qemu = QemuNbdPeer.Start(dir.Path, copy, "base:allocation");
        uint qemuBase = qemu.Contexts["base:allocation"];

        // NBD.md 4.1, verified with nbdinfo --map against qemu-nbd: backing data, hole, overlay data, then hole,zero
        // (the overlay's zero cluster at 4 MiB merges into the run around it).
        var expected = new List<(long, long, uint)> { (0, MiB, 0), (MiB, MiB, 3), (2 * MiB, MiB, 0), (3 * MiB, 13 * MiB, 3) };
        foreach (bool reqOne in new[] { false, true })
        {
            foreach (uint requestLength in new uint[] { (uint)Size, 768 * 1024 })
            {
                var ours = Walk(loop.Client, LoopHarness.BaseContext, reqOne, requestLength);
                var theirs = Walk(qemu.Client, qemuBase, reqOne, requestLength);
                output.WriteLine($"REQ_ONE {reqOne}, requests of {requestLength}: ours {Show(ours)}; qemu-nbd {Show(theirs)}");
                Assert.Equal(expected, ours);
                Assert.Equal(theirs, ours);
            }
        }

        // REQ_ONE: exactly one extent, never longer than asked, at unaligned places too.
        foreach (var (offset, length) in new (long, uint)[] { (0, 4096), (512 * 1024, (uint)MiB), (MiB + 512, (uint)(3 * MiB)), (Size - 512, 512) })
        {
            var ours = loop.Client.Call(NbdCommand.BlockStatus, (ulong)offset, length, NbdCommandFlags.ReqOne).Status[LoopHarness.BaseContext];
            var theirs = qemu.Client.Call(NbdCommand.BlockStatus, (ulong)offset, length, NbdCommandFlags.ReqOne).Status[qemuBase];
            output.WriteLine($"REQ_ONE at {offset} for {length}: ours {string.Join(",", ours)}; qemu-nbd {string.Join(",", theirs)}");
            var extent = Assert.Single(ours);
            Assert.InRange(extent.Length, 1u, length);
            Assert.Equal(theirs, ours);
        }
    }

    [Fact]
    public async Task Allocation_depth_and_base_allocation_together_match_qemu_nbd_on_repeated_queries()
    {
        using var dir = new TempDirectory();
        string image = CreateOverlay(dir);
        string copy = Copy(dir, image);
        await using var device = DiskImage.Open(image, null, new ImageOpenOptions { ReadOnly = true });
        await using var loop = LoopHarness.Start(dir.Path, new NbdExport("", device) { ReadOnly = true, AllocationDepth = true }, allocationDepth: true);
        using var qemu = QemuNbdPeer.Start(dir.Path, copy, "base:allocation", "qemu:allocation-depth");
        uint qemuBase = qemu.Contexts["base:allocation"];
        uint qemuDepth = qemu.Contexts["qemu:allocation-depth"];

        // 1 for the overlay's own clusters (its zero cluster included), 2 for what the backing file provides.
        var expectedDepth = new List<(long, long, uint)> { (0, 2 * MiB, 2), (2 * MiB, MiB, 1), (3 * MiB, MiB, 2), (4 * MiB, MiB, 1), (5 * MiB, 11 * MiB, 2) };
        for (int round = 0; round < 3; round++)
        {
            // One reply, two chunks (one per context), DONE on the last; a past qemu corrupted base:allocation here (NBD.md 4.3).
            var reply = loop.Client.Call(NbdCommand.BlockStatus, 0, (uint)Size);
            Assert.Equal(2, reply.Status.Count);
            var oursBase = Walk(loop.Client, LoopHarness.BaseContext, false, (uint)Size);
            var oursDepth = Walk(loop.Client, LoopHarness.DepthContext, false, (uint)Size);
            var theirsBase = Walk(qemu.Client, qemuBase, false, (uint)Size);
            var theirsDepth = Walk(qemu.Client, qemuDepth, false, (uint)Size);
            output.WriteLine($"round {round}: depth ours {Show(oursDepth)}; qemu-nbd {Show(theirsDepth)}");
            Assert.Equal(expectedDepth, oursDepth);
            Assert.Equal(theirsDepth, oursDepth);
            Assert.Equal(theirsBase, oursBase);
        }

        var one = loop.Client.Call(NbdCommand.BlockStatus, (ulong)(MiB + 4096), (uint)(8 * MiB), NbdCommandFlags.ReqOne);
        Assert.Equal([new NbdExtent((uint)(MiB - 4096), 2)], one.Status[LoopHarness.DepthContext]);
        Assert.Equal([new NbdExtent((uint)(MiB - 4096), 3)], one.Status[LoopHarness.BaseContext]);
    }

    /// <summary>
    /// The map a client builds as nbdinfo --map does: ask from the first uncovered byte until the end, check every answer
    /// (lengths non-zero, within the export, one extent not longer than asked under REQ_ONE), merge equal neighbours.
    /// </summary>
    private static List<(long Offset, long Length, uint Flags)> Walk(WireClient client, uint context, bool reqOne, uint requestLength)
    {
        var map = new List<(long Offset, long Length, uint Flags)>();
        for (long at = 0; at < Size;)
        {
            uint length = (uint)Math.Min(requestLength, Size - at);
            var reply = client.Call(NbdCommand.BlockStatus, (ulong)at, length, reqOne ? NbdCommandFlags.ReqOne : (ushort)0);
            Assert.Equal(0u, reply.Error);
            var extents = reply.Status[context];
            if (reqOne)
            {
                Assert.Single(extents);
                Assert.True(extents[0].Length <= length, "a REQ_ONE extent longer than the request");
            }

            foreach (var extent in extents)
            {
                Assert.NotEqual(0u, extent.Length);
                long take = Math.Min(extent.Length, Size - at);
                if (map.Count > 0 && map[^1].Flags == extent.Flags && map[^1].Offset + map[^1].Length == at)
                {
                    map[^1] = (map[^1].Offset, map[^1].Length + take, extent.Flags);
                }
                else
                {
                    map.Add((at, take, extent.Flags));
                }

                at += take;
            }
        }

        return map;
    }

    private static string Show(List<(long Offset, long Length, uint Flags)> map) => string.Join(" ", map.Select(e => $"{e.Offset}+{e.Length}:{e.Flags}"));

    /// <summary>NBD.md 4.1's overlay: 1 MiB of data in a raw backing file, 1 MiB of data in the QED overlay at 2 MiB, a zero cluster at 4 MiB.</summary>
    private static string CreateOverlay(TempDirectory dir)
    {
        string backing = dir.File("base.raw");
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "raw", backing, "16M");
        Tools.QemuIo(dir.Path, "raw", backing, "write -P 0x11 0 1M");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", backing, "-F", "raw", image, "16M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x22 2M 1M", "write -z 4M 1M");
        return image;
    }

    /// <summary>A copy for qemu-nbd (qemu takes image locks); it names the same backing file.</summary>
    private static string Copy(TempDirectory dir, string image)
    {
        string copy = dir.File("copy.qed");
        File.Copy(image, copy);
        return copy;
    }
}
