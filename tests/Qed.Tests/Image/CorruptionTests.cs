using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Invalid L1/L2 entries met during I/O (QED-FORMAT.md §13.5): the request fails with <see cref="QedCorruptionException"/>, promptly, and nothing else breaks.</summary>
public class CorruptionTests
{
    /// <summary>F16/F17/F19 base: data0 @0x50000, L2 @0x60000 (L2[1] at 0x60008), data1 @0xa0000, file 0xb0000.</summary>
    private static string TwoClusters(TempDirectory dir)
    {
        string path = dir.File("c.qed");
        Img.Create(path, 16 * Img.MiB);
        using var image = QedImage.Open(path);
        image.Write(Img.Fill(65536, 0x16), 0);
        image.Write(Img.Fill(65536, 0x17), 65536);
        return path;
    }

    private static async Task ExpectCorrupt(QedImage image, long offset, int length, bool useAsync)
    {
        await Img.WithTimeout(async () =>
        {
            var e = await Assert.ThrowsAsync<QedCorruptionException>(() => Img.Read(image, offset, length, useAsync));
            Assert.StartsWith("Invalid argument", e.Message, StringComparison.Ordinal);
            return 0;
        });
    }

    public static TheoryData<ulong, bool> BadL2Entries()
    {
        var data = new TheoryData<ulong, bool>();
        foreach (bool useAsync in new[] { false, true })
        {
            data.Add(0x10000000, useAsync); // F16: beyond the end
            data.Add(0xa0200, useAsync); // F17: unaligned
            data.Add(0xb0000, useAsync); // exactly at the end
            data.Add(0x8000, useAsync); // inside the header
            data.Add(ulong.MaxValue, useAsync);
            data.Add(2, useAsync); // a "flag" value
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadL2Entries))]
    public async Task BadL2Entry_FailsReadsOfThatClusterOnly(ulong entry, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = TwoClusters(dir);
        Tools.PokeU64(path, 0x60008, entry);
        await using var image = await Img.Open(path, useAsync);
        Img.AllBytes(0x16, await Img.Read(image, 0, 65536, useAsync));
        await ExpectCorrupt(image, 65536, 4096, useAsync);
        await ExpectCorrupt(image, 65536 + 60000, 100, useAsync);
        // A read that starts before the bad cluster and runs into it fails too.
        await ExpectCorrupt(image, 0, 2 * 65536, useAsync);
        Img.AllBytes(0, await Img.Read(image, 2 * 65536, Img.MiB, useAsync));
        await Img.WithTimeout(async () =>
        {
            await Assert.ThrowsAsync<QedCorruptionException>(() => Img.Status(image, 65536, 65536, useAsync));
            await Assert.ThrowsAsync<QedCorruptionException>(() => Img.Write(image, 65536 + 10, 10, 0x01, useAsync));
            await Assert.ThrowsAsync<QedCorruptionException>(() => Img.WriteZeroes(image, 65536, 65536, useAsync));
            return 0;
        });
        // The image stays usable elsewhere.
        await Img.Write(image, 5 * 65536, 100, 0x05, useAsync);
        Img.AllBytes(0x05, await Img.Read(image, 5 * 65536, 100, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EveryClusterOfARunIsValidated(bool useAsync)
    {
        // §4.1: QEMU validates only the first cluster of a contiguous run, so with L2[1] = 0xa0000 (last valid cluster)
        // and L2[2] = 0xb0000 (= file end), reading clusters 1-2 returns zeros for cluster 2. We fail instead.
        using var dir = new TempDirectory();
        string path = TwoClusters(dir);
        Tools.PokeU64(path, 0x60010, 0xb0000);
        await using var image = await Img.Open(path, useAsync);
        Img.AllBytes(0x17, await Img.Read(image, 65536, 65536, useAsync));
        await ExpectCorrupt(image, 65536, 2 * 65536, useAsync);
        await ExpectCorrupt(image, 2 * 65536, 512, useAsync);
    }

    public static TheoryData<ulong, bool> BadL1Entries()
    {
        var data = new TheoryData<ulong, bool>();
        foreach (bool useAsync in new[] { false, true })
        {
            data.Add(0x10000000, useAsync); // F18: beyond the end
            data.Add(0x60200, useAsync); // unaligned
            data.Add(1, useAsync); // 1 is not special in L1
            data.Add(0x80000, useAsync); // first cluster valid, last one (0xb0000) at the end
            data.Add(0x8000, useAsync);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadL1Entries))]
    public async Task BadL1Entry_FailsEveryRequestUnderIt(ulong entry, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = TwoClusters(dir);
        Tools.PokeU64(path, 0x10000, entry);
        await using var image = await Img.Open(path, useAsync);
        await ExpectCorrupt(image, 0, 512, useAsync);
        await ExpectCorrupt(image, 8 * Img.MiB, 512, useAsync);
        await Img.WithTimeout(async () =>
        {
            await Assert.ThrowsAsync<QedCorruptionException>(() => Img.Write(image, 3 * Img.MiB, 512, 0x01, useAsync));
            await Assert.ThrowsAsync<QedCorruptionException>(() => Img.Status(image, 0, 512, useAsync));
            return 0;
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F21_DataClusterTruncatedAway(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f21.qed");
        Img.Create(path, 16 * Img.MiB);
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(65536, 0x21), 0);
            image.Write(Img.Fill(65536, 0x22), Img.MiB);
        }
        using (var stream = new FileStream(path, FileMode.Open))
        {
            stream.SetLength(0xa0000);
        }
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            Img.AllBytes(0x21, await Img.Read(image, 0, 65536, useAsync));
            await ExpectCorrupt(image, Img.MiB, 65536, useAsync);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F22_L2TableTruncated(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f22.qed");
        Img.Create(path, 16 * Img.MiB);
        using (var image = QedImage.Open(path))
        {
            image.Write(Img.Fill(65536, 0x22), 0);
        }
        using (var stream = new FileStream(path, FileMode.Open))
        {
            stream.SetLength(0x90000);
        }
        await using var reader = await Img.Open(path, useAsync, readOnly: true);
        await ExpectCorrupt(reader, 0, 4096, useAsync);
        await ExpectCorrupt(reader, 15 * Img.MiB, 4096, useAsync);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F19_SharedCluster_ReadsWithoutError(bool useAsync)
    {
        // Two entries pointing at one cluster is a corruption for check, not for the reader.
        using var dir = new TempDirectory();
        string path = TwoClusters(dir);
        Tools.PokeU64(path, 0x60008, 0x50000);
        await using var image = await Img.Open(path, useAsync, readOnly: true);
        Img.AllBytes(0x16, await Img.Read(image, 0, 2 * 65536, useAsync));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DirtyImageWithBadEntry_ReadOnlyOpenStillFailsTheRead(bool useAsync)
    {
        // A read-only open never repairs (§13.5): the bad entry stays and the read fails.
        using var dir = new TempDirectory();
        string path = TwoClusters(dir);
        Tools.PokeU64(path, 0x60008, 0x10000000);
        Tools.Poke(path, 16, 0x02);
        string before = Tools.Sha256OfFile(path);
        await using (var image = await Img.Open(path, useAsync, readOnly: true))
        {
            await ExpectCorrupt(image, 65536, 512, useAsync);
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }
}
