using Qed.Check;
using Qed.Image;
using Qed.Tests.Device;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Image;

/// <summary>
/// Shrinking QED images (which qemu-img refuses) and growing them again: the data below the new end reads the same,
/// nothing past it resurfaces after a grow (neither old data nor the backing file's), qemu-img check finds no error and
/// the same leaks as our checker, and the clusters left unused at the end of the file are cut off.
/// </summary>
public sealed class QedShrinkTests : IDisposable
{
    private const long MiB = 1 << 20;
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<int, int, bool, bool> Cases() => new()
    {
        // 4 KiB clusters, two-cluster tables: one L2 table per 4 MiB, so a 12 MiB disk has three.
        { 4096, 2, false, false },
        { 4096, 2, true, true },
        // The default geometry: one table covers everything, only its tail is cleared.
        { 65536, 4, false, true },
        { 65536, 4, true, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Random_writes_then_shrink_and_grow_read_as_the_model(int clusterSize, int tableSize, bool backing, bool useAsync)
    {
        int seed = TestSeed.For($"{nameof(QedShrinkTests)}({clusterSize},{tableSize},{backing},{useAsync})");
        var random = new Random(seed);
        const long size = 12 * MiB;
        string path = _dir.File("s.qed");
        byte[] model = new byte[size];
        if (backing)
        {
            Img.RawFile(_dir.File("base.raw"), size, 0xb0);
            Array.Fill(model, (byte)0xb0);
            Img.Create(path, size, clusterSize, tableSize, backing: "base.raw", backingFormat: "raw");
        }
        else
        {
            Img.Create(path, size, clusterSize, tableSize);
        }

        const int rounds = 3;
        int ran = 0;
        for (int round = 0; round < rounds; round++)
        {
            long newSize = 512 * random.NextInt64(1, size / 512);
            await using (var image = await Img.Open(path, useAsync))
            {
                await RandomWritesAsync(image, model, random, useAsync);
                await Dev.Resize(image, newSize, useAsync);
                Assert.Equal(newSize, image.Size);
                byte[] below = await Img.Read(image, 0, (int)newSize, useAsync);
                Assert.True(model.AsSpan(0, (int)newSize).SequenceEqual(below), $"round {round}: data below {newSize} changed");
            }
            Assert.Equal((ulong)newSize, Img.FileHeader(path).ImageSize);
            AssertCheckedAndTrimmed(path);
            AssertQemuReads(path, model.AsSpan(0, (int)newSize));

            // Grow back: everything past the shrunken end reads as zeros, not the old data nor the backing file.
            Array.Clear(model, (int)newSize, (int)(size - newSize));
            await using (var image = await Img.Open(path, useAsync))
            {
                await Dev.Resize(image, size, useAsync);
                byte[] all = await Img.Read(image, 0, (int)size, useAsync);
                Assert.True(model.AsSpan().SequenceEqual(all), $"round {round}: grown back from {newSize}, stale data resurfaced");
            }
            AssertQemuReads(path, model);
            Assert.True(QemuOracle.Check(_dir.Path, path).NoCorruption);
            TestSeed.Report($"round {round}: shrunk to {newSize}, file {Img.FileLength(path)} bytes");
            ran++;
        }
        Assert.Equal(rounds, ran);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task One_session_of_writes_shrinks_and_grows_reads_as_the_model(int clusterSize, int tableSize, bool backing, bool useAsync)
    {
        // The same image object throughout: its cache and allocation pointer must follow every shrink (space cut off the
        // file is allocated again by the next writes).
        var random = new Random(TestSeed.For($"{nameof(QedShrinkTests)}.one-session({clusterSize},{tableSize},{backing},{useAsync})"));
        const long size = 12 * MiB;
        string path = _dir.File("s.qed");
        byte[] model = new byte[size];
        if (backing)
        {
            Img.RawFile(_dir.File("base.raw"), size, 0xb0);
            Array.Fill(model, (byte)0xb0);
        }
        Img.Create(path, size, clusterSize, tableSize, backing: backing ? "base.raw" : null, backingFormat: backing ? "raw" : null);

        const int rounds = 4;
        int ran = 0;
        await using (var image = await Img.Open(path, useAsync))
        {
            for (int round = 0; round < rounds; round++)
            {
                await RandomWritesAsync(image, model, random, useAsync);
                long newSize = 512 * random.NextInt64(1, size / 512);
                await Dev.Resize(image, newSize, useAsync);
                byte[] below = await Img.Read(image, 0, (int)newSize, useAsync);
                Assert.True(model.AsSpan(0, (int)newSize).SequenceEqual(below), $"round {round}: data below {newSize} changed");
                Array.Clear(model, (int)newSize, (int)(size - newSize));
                await Dev.Resize(image, size, useAsync);
                byte[] all = await Img.Read(image, 0, (int)size, useAsync);
                Assert.True(model.AsSpan().SequenceEqual(all), $"round {round}: grown back from {newSize}, stale data resurfaced");
                ran++;
            }
        }
        Assert.Equal(rounds, ran);
        AssertQemuReads(path, model);
        var qemu = QemuOracle.Check(_dir.Path, path);
        Assert.True(qemu.NoCorruption, qemu.ToString());
        QemuOracle.AssertOurCheckAgrees(_dir.Path, path, qemu);
    }

    [Fact]
    public void Clusters_left_unused_at_the_end_of_the_file_are_cut_off_the_middle_ones_stay_leaked()
    {
        // Laid out by QEMU: data for 0..1M, its L2 table, data for 5M..6M, its L2 table.
        string path = _dir.File("t.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "12M");
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 1 0 1M", "write -P 2 5M 1M");
        var header = Img.FileHeader(path);
        long firstTable = (long)Img.FileU64(path, (long)header.L1TableOffset);
        long fileBefore = Img.FileLength(path);

        const long newSize = 512 * 1024 + 512;
        using (var image = QedImage.Open(path))
        {
            image.Resize(newSize);
        }
        // The second table and its data were at the end: gone. The first table stays, and so do the data clusters
        // 129..255 of the first megabyte before it, unreferenced now.
        Assert.Equal(firstTable + 2 * 4096, Img.FileLength(path));
        Assert.True(Img.FileLength(path) < fileBefore);
        var qemu = QemuOracle.Check(_dir.Path, path);
        Assert.True(qemu.ExitCode == 3 && qemu.Leaks == 127 && qemu.Corruptions == 0, qemu.ToString());
        QemuOracle.AssertOurCheckAgrees(_dir.Path, path, qemu);
        Tools.QemuIo(_dir.Path, "qed", path, $"read -P 1 0 {newSize}");

        using (var image = QedImage.Open(path))
        {
            image.Resize(12 * MiB);
        }
        Tools.QemuIo(_dir.Path, "qed", path, $"read -P 1 0 {newSize}", $"read -P 0 {newSize} {12 * MiB - newSize}");
        Assert.True(QemuOracle.Check(_dir.Path, path).NoCorruption);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_table_cut_off_the_file_is_forgotten_by_the_cache_before_its_space_is_reused(bool useAsync)
    {
        // 4 KiB clusters, two-cluster tables cached in 4 KiB slices: a table at T is cached as the slices T and T + 4K.
        string path = _dir.File("r.qed");
        Img.Create(path, 8 * MiB, clusterSize: 4096, tableSize: 2);
        await using var image = await Img.Open(path, useAsync);
        await Img.Write(image, 0, 4096, 1, useAsync);
        long end = image.AllocationEnd;
        // Data at 4M and 6M: the second table's slices both cached, both holding entries.
        await Img.Write(image, 4 * MiB, 4096, 2, useAsync);
        await Img.Write(image, 6 * MiB, 4096, 3, useAsync);
        Img.AllBytes(3, await Img.Read(image, 6 * MiB, 4096, useAsync));

        await Dev.Resize(image, 4 * MiB, useAsync);
        Assert.Equal(end, Img.FileLength(path));
        Assert.Equal(end, image.AllocationEnd);
        await Dev.Resize(image, 8 * MiB, useAsync);
        // The new data cluster lands where the cut data for 4M was, the new table where the cut table was: the old table's
        // slices, cached under the same offsets, must not stand in for the new table's.
        await Img.Write(image, 4 * MiB + 4096, 4096, 4, useAsync);
        Img.AllBytes(0, await Img.Read(image, 4 * MiB, 4096, useAsync), "4M, shrunk away and grown back");
        Img.AllBytes(4, await Img.Read(image, 4 * MiB + 4096, 4096, useAsync), "written after the grow");
        Img.AllBytes(0, await Img.Read(image, 6 * MiB, 4096, useAsync), "6M, shrunk away and grown back");
        await image.DisposeAsync();
        Tools.QemuIo(_dir.Path, "qed", path, "read -P 1 0 4k", $"read -P 0 4k {4 * MiB - 4096}", $"read -P 0 {4 * MiB} 4k", $"read -P 4 {4 * MiB + 4096} 4k", $"read -P 0 {4 * MiB + 8192} {4 * MiB - 8192}");
        QemuOracle.AssertClean(_dir.Path, path);
    }

    [Fact]
    public void A_crash_after_the_header_leaves_entries_past_the_end_which_a_grow_zeroes_where_qemu_shows_them_again()
    {
        // What a crash right after the shrink's header write leaves: the size is 1M + 512, the partial last cluster's tail
        // and the entries for the rest of 2M still there.
        const long shrunk = MiB + 512;
        string path = _dir.File("c.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", path, "2M");
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 3 0 2M");
        Img.WriteHeader(path, Img.FileHeader(path) with { ImageSize = (ulong)shrunk });
        QemuOracle.AssertClean(_dir.Path, path);
        string copy = _dir.File("qemu.qed");
        File.Copy(path, copy);

        // qemu-img grows by rewriting the size only: the old data is visible again.
        Tools.QemuImg(_dir.Path, "resize", "-f", "qed", copy, "2M");
        Tools.QemuIo(_dir.Path, "qed", copy, $"read -P 3 {shrunk} {2 * MiB - shrunk}");

        using (var image = QedImage.Open(path))
        {
            image.Resize(2 * MiB);
        }
        Tools.QemuIo(_dir.Path, "qed", path, $"read -P 3 0 {shrunk}", $"read -P 0 {shrunk} {2 * MiB - shrunk}");
        QemuOracle.AssertClean(_dir.Path, path);
    }

    /// <summary>40 writes of random data or zeros, up to 128 KiB each, anywhere on the disk, applied to <paramref name="model"/> too.</summary>
    private static async Task RandomWritesAsync(QedImage image, byte[] model, Random random, bool useAsync)
    {
        for (int op = 0; op < 40; op++)
        {
            long offset = random.NextInt64(0, model.Length);
            int length = (int)Math.Min(random.Next(1, 128 * 1024), model.Length - offset);
            if (random.Next(5) == 0)
            {
                await Img.WriteZeroes(image, offset, length, useAsync);
                Array.Clear(model, (int)offset, length);
            }
            else
            {
                byte[] data = Img.RandomBytes(random, length);
                await Img.Write(image, offset, data, useAsync);
                data.CopyTo(model, offset);
            }
        }
    }

    /// <summary>qemu-img check finds no corruption and the leaks our checker finds, and nothing is left to cut off the end of the file.</summary>
    private void AssertCheckedAndTrimmed(string path)
    {
        var qemu = QemuOracle.Check(_dir.Path, path);
        Assert.True(qemu.NoCorruption, qemu.ToString());
        QemuOracle.AssertOurCheckAgrees(_dir.Path, path, qemu);
        long length = Img.FileLength(path);
        using (var image = QedImage.Open(path))
        {
            Assert.Equal(0, image.Check(RepairMode.Leaks).LeaksFixed);
        }
        Assert.Equal(length, Img.FileLength(path));
    }

    /// <summary>qemu-img compare finds the image equal to <paramref name="expected"/> (as a raw file).</summary>
    private void AssertQemuReads(string path, ReadOnlySpan<byte> expected)
    {
        string raw = _dir.File("expected.raw");
        File.WriteAllBytes(raw, expected.ToArray());
        QemuOracle.AssertIdentical(_dir.Path, path, raw, "qed", "raw");
        File.Delete(raw);
    }
}
