using Qed.Backing;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;
using Qed.Tests.Locking;

namespace Qed.Tests.Image;

/// <summary>
/// The engine parts of commit: a backing layer opened writable (<see cref="ImageOpenOptions.WritableBackingDepth"/>)
/// with a writer's locks while the rest of the chain stays read-only and reads through it, and
/// <see cref="QedImage.MakeEmpty"/>, after which the image reads through to its backing file, its file ends after the
/// L1 table and it is check-clean and writable as before.
/// </summary>
public sealed class CommitEngineTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private (string Top, string Middle, string Base) Chain()
    {
        string b = _dir.File("b.qed"), m = _dir.File("m.qed"), t = _dir.File("t.qed");
        Img.Create(b, 4 << 20, clusterSize: 4096, tableSize: 2);
        Img.Create(m, 4 << 20, backing: "b.qed", backingFormat: "qed");
        Img.Create(t, 4 << 20, clusterSize: 16384, backing: "m.qed", backingFormat: "qed");
        return (t, m, b);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_writable_layer_holds_a_writer_s_locks_and_the_others_stay_read_only(bool useAsync)
    {
        var (t, m, b) = Chain();
        IReadOnlyList<long> writerLocks, readerLocks;
        using (var alone = QedImage.Open(b))
        {
            writerLocks = LockTable.Bytes(b);
        }
        using (var alone = QedImage.Open(m, new ImageOpenOptions { ReadOnly = true, NoBacking = true }))
        {
            readerLocks = LockTable.Bytes(m);
        }

        var top = await Img.Open(t, useAsync, options: new ImageOpenOptions { WritableBackingDepth = 2 });
        try
        {
            var middle = top.Backing!;
            var baseDevice = middle.Backing!;
            Assert.Equal((false, true, false), (top.IsReadOnly, middle.IsReadOnly, baseDevice.IsReadOnly));
            Assert.Equal(writerLocks, LockTable.Bytes(b));
            Assert.Equal(readerLocks, LockTable.Bytes(m));
            // Anyone else is refused the base, writer or reader, as for any QED image open for writing.
            Assert.Throws<QedLockException>(() => QedImage.Open(b).Dispose());
            Assert.Throws<QedLockException>(() => QedImage.Open(b, new ImageOpenOptions { ReadOnly = true }).Dispose());
        }
        finally
        {
            await Img.Close(top, useAsync);
        }
        Assert.Empty(LockTable.Bytes(b));
        Assert.Empty(LockTable.Bytes(m));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Images_over_a_writable_backing_file_read_and_copy_up_through_it(bool useAsync)
    {
        string b = _dir.File("b.qed"), t = _dir.File("t.qed");
        Img.Create(b, 1 << 20, clusterSize: 4096, tableSize: 2);
        Img.Create(t, 1 << 20, backing: "b.qed", backingFormat: "qed");
        var top = await Img.Open(t, useAsync, options: new ImageOpenOptions { WritableBackingDepth = 1 });
        try
        {
            var baseDevice = top.Backing!;
            await Img.Write(baseDevice, 0, 256 << 10, 0x5a, useAsync);
            // Visible through the top where it holds nothing.
            Img.AllBytes(0x5a, await Img.Read(top, 0, 256 << 10, useAsync), "base data read through the top");
            // A partial write of a 64 KiB cluster of the top copies the rest up from the writable base.
            await Img.Write(top, 8192, 4096, 0x11, useAsync);
            byte[] cluster = await Img.Read(top, 0, 65536, useAsync);
            Img.AllBytes(0x5a, cluster.AsSpan(0, 8192), "head copied up");
            Img.AllBytes(0x11, cluster.AsSpan(8192, 4096), "payload");
            Img.AllBytes(0x5a, cluster.AsSpan(12288), "tail copied up");
            // A later change of the base under an allocated cluster of the top does not show through.
            await Img.Write(baseDevice, 0, 65536, 0x77, useAsync);
            Assert.Equal(cluster, await Img.Read(top, 0, 65536, useAsync));
        }
        finally
        {
            await Img.Close(top, useAsync);
        }
        Assert.Equal(0, Tools.QemuImgRaw(_dir.Path, "check", b).ExitCode);
        Assert.Equal(0, Tools.QemuImgRaw(_dir.Path, "check", t).ExitCode);
    }

    [Fact]
    public void A_depth_the_chain_does_not_have_is_refused_and_leaves_nothing_locked()
    {
        string b = _dir.File("b.raw"), t = _dir.File("t.qed");
        RawImage.Create(b, 1 << 20).Dispose();
        Img.Create(t, 1 << 20, backing: "b.raw", backingFormat: "raw");
        var e = Assert.Throws<QedBackingFileException>(() => DiskImage.Open(t, "qed", new ImageOpenOptions { WritableBackingDepth = 2 }));
        Assert.Contains("no backing file at depth 2", e.Message, StringComparison.Ordinal);
        Assert.Empty(LockTable.Bytes(t));
        Assert.Empty(LockTable.Bytes(b));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MakeEmpty_reads_through_to_the_backing_file_truncates_and_keeps_working(bool useAsync)
    {
        string b = _dir.File("b.raw"), t = _dir.File("t.qed");
        using (var raw = RawImage.Create(b, 2 << 20))
        {
            raw.Write(Img.Fill(1 << 20, 0x42), 0);
        }
        Img.Create(t, 2 << 20, clusterSize: 4096, tableSize: 2, backing: "b.raw", backingFormat: "raw");
        var header = Img.FileHeader(t);
        long metadataEnd = (long)header.L1TableOffset + 2 * 4096;

        var top = await Img.Open(t, useAsync);
        try
        {
            await Img.Write(top, 0, 64 << 10, 0x99, useAsync);
            await Img.WriteZeroes(top, 1 << 20, 64 << 10, useAsync);
            Assert.True(Img.FileLength(t) > metadataEnd);

            if (useAsync)
            {
                await top.MakeEmptyAsync();
            }
            else
            {
                top.MakeEmpty();
            }
            Assert.Equal(metadataEnd, Img.FileLength(t));
            Img.AllBytes(0x42, await Img.Read(top, 0, 1 << 20, useAsync), "the base's data");
            Img.AllBytes(0, await Img.Read(top, 1 << 20, 1 << 20, useAsync), "the base's zeros");
            Assert.Equal(BlockState.Unallocated, (await Img.Status(top, 0, 2 << 20, useAsync)).State);
            Assert.Equal(2L << 20, (await Img.Status(top, 0, 2 << 20, useAsync)).Length);

            // Allocation starts again after the L1 table.
            await Img.Write(top, 4096, 4096, 0x33, useAsync);
            Img.AllBytes(0x33, await Img.Read(top, 4096, 4096, useAsync), "a write after emptying");
        }
        finally
        {
            await Img.Close(top, useAsync);
        }
        var check = Tools.QemuImgRaw(_dir.Path, "check", t);
        Assert.True(check.ExitCode == 0, check.ToString());
        using var reopened = QedImage.Open(t, new ImageOpenOptions { ReadOnly = true });
        Img.AllBytes(0x33, Img.ReadSync(reopened, 4096, 4096), "after reopening");
        Img.AllBytes(0x42, Img.ReadSync(reopened, 8192, 8192), "the base after reopening");
    }

    [Fact]
    public void MakeEmpty_of_a_read_only_image_is_refused()
    {
        string t = _dir.File("t.qed");
        Img.Create(t, 1 << 20);
        using var image = QedImage.Open(t, new ImageOpenOptions { ReadOnly = true });
        Assert.Throws<QedReadOnlyException>(image.MakeEmpty);
    }

    [Fact]
    public void ChainCommit_refuses_a_read_only_base_and_a_top_it_cannot_empty()
    {
        string b = _dir.File("b.raw"), t = _dir.File("t.qed");
        RawImage.Create(b, 1 << 20).Dispose();
        Img.Create(t, 1 << 20, backing: "b.raw", backingFormat: "raw");
        using (var readOnlyBase = QedImage.Open(t))
        {
            Assert.Throws<QedReadOnlyException>(() => ChainCommit.RunAsync(readOnlyBase, 1, makeEmpty: false, null, 0, useAsync: false, CancellationToken.None).GetAwaiter().GetResult());
        }
        using var raw = RawImage.Open(b);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChainCommit.RunAsync(raw, 1, makeEmpty: false, null, 0, useAsync: false, CancellationToken.None).GetAwaiter().GetResult());
    }
}
