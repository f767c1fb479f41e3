using System.Buffers.Binary;
using System.Text.Json;
using Qed.Formats.Qcow2;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>The qcow2 snapshot table reader (QCOW2.md §8, rule 28) against qemu-img's own listing and refusals.</summary>
public sealed class Qcow2ReadSnapshotTableTests
{
    private static async Task<(Qcow2Header Header, Qcow2SnapshotTable Table)> ReadAsync(string path, bool useAsync)
    {
        using var file = HandleFileAccessor.Open(path, readOnly: true);
        byte[] head = new byte[Qcow2Header.ReadLength];
        await file.ReadZeroPaddedAsync(head, 0, useAsync, CancellationToken.None);
        var header = Qcow2Header.Parse(head);
        header.Validate(forWriting: false);
        return (header, await Qcow2SnapshotTable.ReadAsync(file, header, useAsync, CancellationToken.None));
    }

    [Theory]
    [InlineData(false, "compat=1.1")]
    [InlineData(true, "compat=1.1")]
    [InlineData(false, "compat=0.10")]
    [InlineData(true, "cluster_size=512")]
    public async Task Snapshots_agree_with_qemu_img_info(bool useAsync, string options)
    {
        int seed = TestSeed.For(nameof(Snapshots_agree_with_qemu_img_info));
        var random = new Random(seed);
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, "x.qcow2", "64M");
        int count = random.Next(1, 6);
        var names = new List<string>();
        for (int i = 0; i < count; i++)
        {
            Tools.QemuIo(dir.Path, "qcow2", "x.qcow2", $"write -P {i + 1} {random.Next(0, 1000) * 4096} 4k");
            // Names of varied lengths, so the entries' padding varies.
            names.Add($"snap-{i}-" + new string('n', random.Next(0, 40)));
            Tools.QemuImg(dir.Path, "snapshot", "-c", names[^1], "x.qcow2");
        }
        if (count > 1)
        {
            // A deleted first entry: the table is rewritten without it.
            Tools.QemuImg(dir.Path, "snapshot", "-d", names[0], "x.qcow2");
            count--;
        }

        var (header, table) = await ReadAsync(dir.File("x.qcow2"), useAsync);
        using var info = JsonDocument.Parse(Tools.QemuImg(dir.Path, "info", "--output=json", "x.qcow2").StdOut);
        var listed = info.RootElement.TryGetProperty("snapshots", out var s) ? s.EnumerateArray().ToArray() : [];
        Assert.Equal(listed.Length, table.Snapshots.Count);
        Assert.Equal((int)header.SnapshotCount, table.Snapshots.Count);
        var described = table.Describe();
        for (int i = 0; i < listed.Length; i++)
        {
            var q = listed[i];
            Assert.Equal(q.GetProperty("id").GetString(), described[i].Id);
            Assert.Equal(q.GetProperty("name").GetString(), described[i].Name);
            Assert.Equal(q.GetProperty("date-sec").GetInt64(), described[i].DateSeconds);
            Assert.Equal(q.GetProperty("date-nsec").GetInt64(), described[i].DateNanoseconds);
            Assert.Equal(q.GetProperty("vm-clock-nsec").GetInt64(), described[i].VmClockNanoseconds);
            Assert.Equal(q.GetProperty("vm-state-size").GetInt64(), described[i].VmStateSize);
            Assert.Equal(q.TryGetProperty("icount", out var icount) ? icount.GetInt64() : null, described[i].InstructionCount);
            Assert.Equal(header.Size, table.Snapshots[i].DiskSize);
            Assert.Equal(0UL, table.Snapshots[i].L1TableOffset % (ulong)header.ClusterSize);
            Assert.True(table.Snapshots[i].L1Size >= 1);
        }
        Assert.Equal(0L, table.Snapshots[0].EntryOffset - (long)header.SnapshotsOffset);
        Assert.True(table.Size > 0 && table.Size <= count * 200);
    }

    [Fact]
    public async Task Short_extra_data_reads_as_qemu_reads_it()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Tools.QemuImg(dir.Path, "snapshot", "-c", "only", "x.qcow2");
        var (header, _) = await ReadAsync(dir.File("x.qcow2"), useAsync: false);
        long entry = (long)header.SnapshotsOffset;
        // Extra data cut to 16 bytes: no instruction count; the ID and name then start 8 bytes earlier.
        byte[] bytes = File.ReadAllBytes(dir.File("x.qcow2"));
        int idAt = (int)entry + Qcow2SnapshotTable.FixedSize + 24;
        Tools.Poke(dir.File("x.qcow2"), idAt - 8, bytes.AsSpan(idAt, 5).ToArray());
        Tools.Poke(dir.File("x.qcow2"), entry + 36, [0, 0, 0, 16]);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(0, 8), 0x1234);
        Tools.Poke(dir.File("x.qcow2"), entry + Qcow2SnapshotTable.FixedSize, bytes.AsSpan(0, 8).ToArray());

        var (_, table) = await ReadAsync(dir.File("x.qcow2"), useAsync: true);
        using var info = JsonDocument.Parse(Tools.QemuImg(dir.Path, "info", "--output=json", "x.qcow2").StdOut);
        var q = info.RootElement.GetProperty("snapshots")[0];
        var ours = Assert.Single(table.Describe());
        Assert.Equal(q.GetProperty("name").GetString(), ours.Name);
        Assert.Equal("only", ours.Name);
        Assert.Equal(q.GetProperty("vm-state-size").GetInt64(), ours.VmStateSize);
        Assert.Equal(0x1234, ours.VmStateSize);
        Assert.False(q.TryGetProperty("icount", out _));
        Assert.Null(ours.InstructionCount);
    }

    [Fact]
    public async Task A_table_beyond_the_end_of_the_file_reads_as_zeros_like_qemu()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Tools.Poke(dir.File("x.qcow2"), 60, [0, 1, 0, 0]);                       // 65,536 snapshots
        Tools.Poke(dir.File("x.qcow2"), 64, [0, 0, 0, 0, 0x10, 0, 0, 0]);        // at 256 MiB
        var started = DateTime.UtcNow;
        var (_, table) = await ReadAsync(dir.File("x.qcow2"), useAsync: true);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
        using var info = JsonDocument.Parse(Tools.QemuImg(dir.Path, "info", "--output=json", "x.qcow2").StdOut);
        Assert.Equal(info.RootElement.GetProperty("snapshots").GetArrayLength(), table.Snapshots.Count);
        Assert.All(table.Snapshots, s => Assert.Equal("", s.Name));
        Assert.Equal(65536L * Qcow2SnapshotTable.FixedSize, table.Size);
    }

    public static TheoryData<string> Hostile => new() { "extra data of 1025 bytes", "extra data of 4 GiB", "table over 64 MiB" };

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task Refusals_match_qemu_img(string name)
    {
        using var dir = new TempDirectory();
        string path = dir.File("x.qcow2");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Tools.QemuImg(dir.Path, "snapshot", "-c", "s1", "x.qcow2");
        Tools.QemuImg(dir.Path, "snapshot", "-c", "s2", "x.qcow2");
        var (header, _) = await ReadAsync(path, useAsync: false);
        long entry = (long)header.SnapshotsOffset;
        switch (name)
        {
            case "extra data of 1025 bytes":
                Tools.Poke(path, entry + 36, [0, 0, 4, 1]);
                break;
            case "extra data of 4 GiB":
                Tools.Poke(path, entry + 72 + 36, [0xff, 0xff, 0xff, 0xff]);
                break;
            default:
                // 1,100 entries at 1 GiB, each with a 65,535-byte name: more than 64 MiB before the last.
                const long at = 1L << 30;
                const int entries = 1100;
                Tools.Poke(path, 60, [0, 0, (entries >> 8) & 0xff, entries & 0xff]);
                Tools.Poke(path, 64, [0, 0, 0, 0, 0x40, 0, 0, 0]);
                long offset = at;
                for (int i = 0; i < entries; i++)
                {
                    Tools.Poke(path, offset + 14, [0xff, 0xff]);
                    offset = (offset + Qcow2SnapshotTable.FixedSize + 0xffff + 7) & ~7L;
                }
                break;
        }

        var qemu = Tools.QemuImgRaw(dir.Path, "info", "x.qcow2");
        Assert.True(qemu.ExitCode == 1, $"{name}: qemu-img accepted the image: {qemu}");
        string prefix = "qemu-img: Could not open 'x.qcow2': ";
        string qemuLine = qemu.StdErr.Split('\n')[0];
        Assert.StartsWith(prefix, qemuLine);
        foreach (bool useAsync in new[] { false, true })
        {
            var e = await Assert.ThrowsAsync<QedFormatException>(() => ReadAsync(path, useAsync));
            Assert.Equal(qemuLine[prefix.Length..], e.Message);
        }
    }
}
