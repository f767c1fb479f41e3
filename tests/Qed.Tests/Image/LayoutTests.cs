using Qed.Format;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>
/// Where the allocator puts things (append-only, data before its new L2 table, exact cluster counts), checked against
/// the layouts QEMU produced for the same writes (QED-FORMAT.md §1.7, §3.3 (d), §13.1, §13.2). The reader views are
/// also compared with QEMU's flatten digests of the fixtures.
/// </summary>
public class LayoutTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FirstWrite_OnADefaultImage_MatchesSection33d(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("def.qed");
        Img.Create(path, 10 * Img.MiB);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 4096, 0xab, useAsync);
            Assert.Equal(0xa0000, image.AllocationEnd);
        }
        Assert.Equal(0x60000UL, Img.FileU64(path, 0x10000)); // L1[0]
        Assert.Equal(0x50000UL, Img.FileU64(path, 0x60000)); // L2[0]
        Assert.Equal(0xa0000, Img.FileLength(path));
        byte[] cluster = Img.FileBytes(path, 0x50000, 0x10000);
        Img.AllBytes(0xab, cluster.AsSpan(0, 4096));
        Img.AllBytes(0, cluster.AsSpan(4096));
        // The rest of the L1 and of the L2 are zero.
        Img.AllBytes(0, Img.FileBytes(path, 0x10008, 0x40000 - 8), "L1");
        Img.AllBytes(0, Img.FileBytes(path, 0x60008, 0x40000 - 8), "L2");
        Assert.Equal(QedFeatures.None, Img.FileHeader(path).Features);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Allocation_IsAppendOnly_DataBeforeItsNewTable(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("app.qed");
        Img.Create(path, 6L << 30); // three L2 spans
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 4096, 4096, 0x01, useAsync); // data 0x50000, L2 0x60000
            await Img.Write(image, 0x10000, 4096, 0x02, useAsync); // cluster 1 into the existing L2: data 0xa0000
            Assert.Equal(0xb0000, image.AllocationEnd);
            await Img.Write(image, (2L << 30) + 0x20000, 100, 0x03, useAsync); // new L2 span: data 0xb0000, L2 0xc0000
            Assert.Equal(0x100000, image.AllocationEnd);
            await Img.Write(image, 0x30000, 0x20000, 0x04, useAsync); // two clusters at once: contiguous at 0x100000
            Assert.Equal(0x120000, image.AllocationEnd);
            await Img.Write(image, 4096 + 10, 10, 0x05, useAsync); // in place
            Assert.Equal(0x120000, image.AllocationEnd);
        }
        Assert.Equal(0x120000, Img.FileLength(path));
        Assert.Equal(0x60000UL, Img.FileU64(path, 0x10000));
        Assert.Equal(0xc0000UL, Img.FileU64(path, 0x10008));
        Assert.Equal(0x50000UL, Img.FileU64(path, 0x60000));
        Assert.Equal(0xa0000UL, Img.FileU64(path, 0x60008));
        Assert.Equal(0x100000UL, Img.FileU64(path, 0x60018));
        Assert.Equal(0x110000UL, Img.FileU64(path, 0x60020));
        Assert.Equal(0xb0000UL, Img.FileU64(path, 0xc0000 + 2 * 8));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F02_4KTs2_LayoutAndDigest(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f02.qed");
        Img.Create(path, 16 * Img.MiB, 4096, 2);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 4096, 0x11, useAsync);
            await Img.Write(image, 6 * 1024, 1024, 0x22, useAsync);
            await Img.Write(image, Img.MiB, 12 * 1024, 0x33, useAsync);
            await Img.Write(image, 16380L * 1024, 4096, 0x44, useAsync);
        }
        Assert.Equal(53248, Img.FileLength(path));
        Assert.Equal(0x4000UL, Img.FileU64(path, 0x1000)); // L1[0]
        Assert.Equal(0x3000UL, Img.FileU64(path, 0x4000)); // L2[0]
        Assert.Equal(0x6000UL, Img.FileU64(path, 0x4000 + 8));
        Assert.Equal(0x7000UL, Img.FileU64(path, 0x4000 + 256 * 8));
        Assert.Equal(0x8000UL, Img.FileU64(path, 0x4000 + 257 * 8));
        Assert.Equal(0x9000UL, Img.FileU64(path, 0x4000 + 258 * 8));
        Assert.Equal(0xb000UL, Img.FileU64(path, 0x1000 + 3 * 8)); // L1[3]
        Assert.Equal(0xa000UL, Img.FileU64(path, 0xb000 + 1023 * 8));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("00cd3d5d8f79b7f8fd5d8ec43b584f12b84abc7757d5ddafffa90bb165127208", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F03_64KTs16_Layout(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f03.qed");
        Img.Create(path, 1L << 30, 65536, 16);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 65536, 0x55, useAsync);
            await Img.Write(image, 512L * Img.MiB, 100 * 1024, 0x66, useAsync);
        }
        Assert.Equal(0x120000UL, Img.FileU64(path, 0x10000));
        Assert.Equal(0x110000UL, Img.FileU64(path, 0x120000));
        Assert.Equal(0x220000UL, Img.FileU64(path, 0x120000 + 8192 * 8));
        Assert.Equal(0x230000UL, Img.FileU64(path, 0x120000 + 8193 * 8));
        Assert.Equal(0x240000, Img.FileLength(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F04_1MClusters_LayoutAndDigest(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f04.qed");
        Img.Create(path, 64 * Img.MiB, 1 << 20, 2);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 3 * Img.MiB, 4096, 0x77, useAsync);
        }
        Assert.Equal(0x100000UL, Img.FileHeader(path).L1TableOffset);
        Assert.Equal(0x400000UL, Img.FileU64(path, 0x100000));
        Assert.Equal(0x300000UL, Img.FileU64(path, 0x400000 + 3 * 8));
        Assert.Equal(6L * Img.MiB, Img.FileLength(path));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("a2fc800650c9c99fc5e0f028c7b5e45f95a9a57e148e92abe4f188cadda3c217", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F05_WriteAcrossAnL2Boundary_IsSplit(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f05.qed");
        Img.Create(path, 64 * Img.MiB, 4096, 2);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 8192, 0x01, useAsync);
            await Img.Write(image, 5 * Img.MiB, 4096, 0x02, useAsync);
            await Img.Write(image, 13 * Img.MiB, 4096, 0x03, useAsync);
            await Img.Write(image, 63 * Img.MiB, 4096, 0x04, useAsync);
            await Img.Write(image, 4092 * 1024, 8192, 0x05, useAsync);
        }
        Assert.Equal(0x5000UL, Img.FileU64(path, 0x1000));
        Assert.Equal(0x8000UL, Img.FileU64(path, 0x1000 + 8));
        Assert.Equal(0xb000UL, Img.FileU64(path, 0x1000 + 3 * 8));
        Assert.Equal(0xe000UL, Img.FileU64(path, 0x1000 + 15 * 8));
        Assert.Equal(0x10000UL, Img.FileU64(path, 0x5000 + 1023 * 8));
        Assert.Equal(0x11000UL, Img.FileU64(path, 0x8000));
        Assert.Equal(0x12000, Img.FileLength(path));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("d743738fcdab7b742f80137e61445e2cecb5035fa746e17ca6fd3e7f6398b61c", DeviceDigest.Sha256(reader));
    }

    [Fact]
    public void F06_TableSize1_OpensAndWorks()
    {
        // QEMU 7.2 cannot open any ts = 1 image (§2.3); the spec allows it, and so does our reader.
        using var dir = new TempDirectory();
        string path = dir.File("f06.qed");
        Img.Create(path, 16 * Img.MiB, 4096, 1);
        Assert.Equal(8192, Img.FileLength(path));
        using (var image = QedImage.Open(path))
        {
            Img.AllBytes(0, Img.ReadSync(image, 0, 16 * Img.MiB));
            image.Write(Img.Fill(4096, 0x06), 0);
        }
        // data 0x2000, L2 0x3000 (one cluster)
        Assert.Equal(0x3000UL, Img.FileU64(path, 0x1000));
        Assert.Equal(0x2000UL, Img.FileU64(path, 0x3000));
        Assert.Equal(0x4000, Img.FileLength(path));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F24_TrailingPartialCluster_IsOverwrittenByTheNextAllocation(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("f24.qed");
        Img.Create(path, 16 * Img.MiB);
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 65536, 0x24, useAsync);
        }
        using (var stream = new FileStream(path, FileMode.Append))
        {
            stream.Write(Img.Fill(1000, 0xee));
        }
        Assert.Equal(656360, Img.FileLength(path));
        await using (var image = await Img.Open(path, useAsync))
        {
            Assert.Equal(0xa0000, image.AllocationEnd);
            await Img.Write(image, Img.MiB, 4096, 0x01, useAsync);
        }
        Assert.Equal(0xb0000, Img.FileLength(path));
        Assert.Equal(0xa0000UL, Img.FileU64(path, 0x60000 + 16 * 8));
        byte[] cluster = Img.FileBytes(path, 0xa0000, 0x10000);
        Img.AllBytes(0x01, cluster.AsSpan(0, 4096));
        Img.AllBytes(0, cluster.AsSpan(4096));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Img.AllBytes(0x24, Img.ReadSync(reader, 0, 65536));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F07_CowOverRaw_LayoutAndDigest(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("f07-base.raw"), 4 * Img.MiB, 0xb0);
        string path = dir.File("f07-cow.qed");
        Img.Create(path, 4 * Img.MiB, backing: "f07-base.raw", backingFormat: "raw");
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 4096, 4096, 0xc1, useAsync);
            await Img.Write(image, 130 * 1024, 2048, 0xc2, useAsync);
            await Img.Write(image, Img.MiB, 65536, 0xc3, useAsync);
        }
        var header = Img.FileHeader(path);
        Assert.Equal((QedFeatures)0x05, header.Features);
        Assert.Equal(0x50000UL, Img.FileU64(path, 0x60000));
        Assert.Equal(0xa0000UL, Img.FileU64(path, 0x60000 + 2 * 8));
        Assert.Equal(0xb0000UL, Img.FileU64(path, 0x60000 + 16 * 8));
        Assert.Equal(0xc0000, Img.FileLength(path));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("71dd67437e01301bea79cfc97f5e694f190d187b6994e81247b918add0f80b6f", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F12_ShortUnalignedBacking_CopiesUpToItsEndThenZeros(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("f12-short.raw"), 1_000_000, 0xe0);
        string path = dir.File("f12.qed");
        Img.Create(path, 4 * Img.MiB, backing: "f12-short.raw", backingFormat: "raw");
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 960 * 1024, 4096, 0xe1, useAsync);
            byte[] all = await Img.Read(image, 0, 4 * Img.MiB, useAsync);
            Img.AllBytes(0xe0, all.AsSpan(0, 960 * 1024));
            Img.AllBytes(0xe1, all.AsSpan(960 * 1024, 4096));
            Img.AllBytes(0xe0, all.AsSpan(964 * 1024, 1_000_000 - 964 * 1024));
            Img.AllBytes(0, all.AsSpan(1_000_000));
        }
        // The copied-up cluster 15 holds backing bytes up to the backing EOF and zeros after.
        ulong data = Img.FileU64(path, 0x60000 + 15 * 8);
        byte[] cluster = Img.FileBytes(path, (long)data, 65536);
        int eofInCluster = 1_000_000 - 15 * 65536;
        Img.AllBytes(0, cluster.AsSpan(eofInCluster));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("735a186dd48b82e734f565268dd105fa655327a5993d541328b7cd9f828c2f28", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F25_HeaderSize2_ReadsAndAllocatesAfterTheFileEnd(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("f07-base.raw"), 4 * Img.MiB, 0xb0);
        string path = dir.File("f25.qed");
        using (var stream = new FileStream(path, FileMode.Create))
        {
            stream.SetLength(0x60000);
        }
        Img.WriteHeader(path, new QedHeader
        {
            Magic = HeaderLayout.Magic,
            ClusterSize = 0x10000,
            TableSize = 4,
            HeaderSize = 2,
            Features = (QedFeatures)0x05,
            L1TableOffset = 0x20000,
            ImageSize = 0x1000000,
            BackingFilenameOffset = 0x10064,
            BackingFilenameSize = 12,
        });
        Tools.Poke(path, 0x10064, "f07-base.raw"u8.ToArray());
        await using (var image = await Img.Open(path, useAsync))
        {
            Assert.Equal("f07-base.raw", image.BackingFileName);
            Assert.Equal("raw", image.BackingFormat);
            await Img.Write(image, 0, 4096, 0x25, useAsync);
        }
        Assert.Equal(0x70000UL, Img.FileU64(path, 0x20000));
        Assert.Equal(0x60000UL, Img.FileU64(path, 0x70000));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("268dca61dd255595c7d5f115de869b83d1aa55333d12f9f86c92c8846bb6c315", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task F28_LargeAllocatingWrite_ReservesExactlyTheClustersItNeeds(bool useAsync)
    {
        // QEMU reserves 4 097 clusters for this 16 MiB write and points L2[4096] at an unwritten cluster (§5.3).
        using var dir = new TempDirectory();
        Img.RawFile(dir.File("f28-base.raw"), 64 * Img.MiB, 0x28);
        string path = dir.File("f28.qed");
        Img.Create(path, 64 * Img.MiB, 4096, 16, backing: "f28-base.raw", backingFormat: "raw");
        await using (var image = await Img.Open(path, useAsync))
        {
            await Img.Write(image, 0, 16 * Img.MiB, 0x29, useAsync);
            Assert.Equal(0x11000L + 16 * Img.MiB + 0x10000, image.AllocationEnd);
        }
        // As QEMU lays it out: the whole 16 MiB run first (one contiguous run, even across L2 slices), the L2 table
        // after it at 0x1011000; but L2[4096] stays unallocated, where QEMU points it at a never-written cluster.
        ulong l2 = Img.FileU64(path, 0x1000);
        Assert.Equal((ulong)(0x11000 + 16 * Img.MiB), l2);
        byte[] table = Img.FileBytes(path, (long)l2, 16 * 4096);
        for (int i = 0; i < 4096; i++)
        {
            Assert.Equal(0x11000UL + (ulong)i * 4096, BitConverter.ToUInt64(table, i * 8));
        }
        Assert.Equal(0UL, BitConverter.ToUInt64(table, 4096 * 8));
        Assert.Equal(0x11000L + 16 * Img.MiB + 0x10000, Img.FileLength(path));
        using var reader = QedImage.Open(path, new ImageOpenOptions { ReadOnly = true });
        Assert.Equal("af3d6a16f2c0984d642b1e043da9fdea5d974136924f9eee15485476ed30f5e0", DeviceDigest.Sha256(reader));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FileLength_EqualsTheAllocationEnd_AfterEveryRequest(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("len.qed");
        Img.Create(path, 16 * Img.MiB, 4096, 2);
        var random = new Random(33);
        await using var image = await Img.Open(path, useAsync);
        long expectedEnd = 0x3000;
        var allocated = new HashSet<long>();
        var tables = new HashSet<int>();
        for (int i = 0; i < 60; i++)
        {
            long offset = random.Next(0, 16 * Img.MiB - 20000);
            int length = random.Next(1, 20000);
            var before = allocated.Count;
            for (long c = offset / 4096; c <= (offset + length - 1) / 4096; c++)
            {
                allocated.Add(c);
                if (tables.Add((int)(c / 1024)))
                {
                    expectedEnd += 0x2000;
                }
            }
            expectedEnd += (allocated.Count - before) * 4096L;
            await Img.Write(image, offset, Img.RandomBytes(random, length), useAsync);
            Assert.Equal(expectedEnd, image.AllocationEnd);
            Assert.Equal(expectedEnd, Img.FileLength(path));
        }
    }
}
