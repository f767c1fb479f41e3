using System.Security.Cryptography;
using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Formats;

/// <summary>
/// The qcow2 reader against QEMU: every fixture of QCOW2.md §16 reads as its reference digest and as qemu-img converts
/// it at test time; seeded random images of every geometry (v2/v3, extended L2, compressed clusters, backing files)
/// read byte for byte as qemu-img flattens them, whole and in random ranges, sync and async.
/// </summary>
public sealed class Qcow2ReadTests
{
    private static readonly ImageOpenOptions s_readOnly = new() { ReadOnly = true };

    /// <summary>Fixtures read through the library (Q16 is encrypted; Q17's data file is named relative to the current directory: its own test).</summary>
    public static TheoryData<string> Readable() => [.. Qcow2Fixtures.All.Where(f => f.Name is not ("Q16" or "Q17")).Select(f => f.Name)];

    [Theory]
    [MemberData(nameof(Readable))]
    public void Fixture_reads_as_the_reference_and_as_qemu_img(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        string qemu = Tools.QemuFlattenDigest(Qcow2Fixtures.Directory, fixture.FileName, "qcow2");
        Assert.Equal(fixture.Digest, qemu);
        using var device = ImageFormats.Qcow2.Open(fixture.Path, s_readOnly);
        Assert.Equal(fixture.VirtualSize, device.Size);
        Assert.Equal(fixture.Digest, DeviceDigest.Sha256(device));
    }

    [Theory]
    [MemberData(nameof(Readable))]
    public async Task Fixture_reads_the_same_async_in_odd_pieces(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        await using var device = await ImageFormats.Qcow2.OpenAsync(fixture.Path, s_readOnly, TestContext.Current.CancellationToken);
        Assert.Equal(fixture.Digest, await DigestAsync(device, 3 * 65536 + 1536));
    }

    [Fact]
    public void External_data_file_is_read_relative_to_the_current_directory()
    {
        var fixture = Qcow2Fixtures.Get("Q17");
        using var dir = new TempDirectory();
        string output = dir.File("out.raw");
        // The current directory is the process's: run qed in its own process from the fixture directory.
        var ours = QedProcess.Run(Qcow2Fixtures.Directory, TimeSpan.FromMinutes(2), "convert", "-f", "qcow2", "-O", "raw", "Q17.qcow2", output);
        Assert.True(ours.ExitCode == 0, ours.ToString());
        Assert.Equal(fixture.Digest, Tools.Sha256OfFile(output));

        // From elsewhere the data file is not found, as in QEMU.
        var qemu = Tools.QemuImgRaw(dir.Path, "convert", "-f", "qcow2", "-O", "raw", fixture.Path, dir.File("q.raw"));
        var refused = QedProcess.Run(dir.Path, TimeSpan.FromMinutes(2), "convert", "-f", "qcow2", "-O", "raw", fixture.Path, dir.File("q.raw"));
        Assert.Equal(1, qemu.ExitCode);
        Assert.Equal(1, refused.ExitCode);
        Assert.Equal(qemu.StdErr.Split('\n')[0].Replace("qemu-img: ", "qed: ", StringComparison.Ordinal), refused.StdErr.TrimEnd('\n'));
    }

    /// <summary>One random image: the create options and how many random writes qemu-io makes.</summary>
    public static TheoryData<string, bool, bool> Geometries => new()
    {
        // create options, with a backing file, with compressed writes
        { "cluster_size=512,compat=0.10", false, false },
        { "cluster_size=512", true, true },
        { "cluster_size=4k", false, true },
        { "cluster_size=4k,compat=0.10", true, true },
        { "cluster_size=64k", true, true },
        { "cluster_size=64k,compat=0.10", false, true },
        { "cluster_size=2M", true, false },
        { "cluster_size=16k,extended_l2=on", true, true },
        { "cluster_size=64k,extended_l2=on", false, true },
        { "cluster_size=64k,extended_l2=on", true, false },
        { "cluster_size=2M,extended_l2=on", true, true },
        { "cluster_size=64k,compression_type=zstd", false, true },
        { "cluster_size=4k,refcount_bits=1,lazy_refcounts=on", true, false },
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public async Task Random_images_read_as_qemu_flattens_them(string options, bool withBacking, bool compressed)
    {
        int seed = TestSeed.For($"{nameof(Random_images_read_as_qemu_flattens_them)}({options}, {withBacking}, {compressed})");
        var random = new Random(seed);
        using var dir = new TempDirectory();
        string cluster = options.Split(',').First(o => o.StartsWith("cluster_size=", StringComparison.Ordinal))["cluster_size=".Length..];
        long clusterSize = cluster switch { "512" => 512, "4k" => 4096, "16k" => 16384, "64k" => 65536, "2M" => 2 << 20, _ => throw new ArgumentException(cluster) };
        long size = clusterSize == 2 << 20 ? 64L << 20 : 8L << 20;
        var create = new List<string> { "create", "-q", "-f", "qcow2", "-o", options };
        if (withBacking)
        {
            Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "base.qcow2", (size - 3 * clusterSize).ToString(System.Globalization.CultureInfo.InvariantCulture));
            Tools.QemuIo(dir.Path, "qcow2", "base.qcow2", RandomWrites(random, size - 3 * clusterSize, clusterSize, 12, compressed: false, zeroes: false));
            create.AddRange(["-b", "base.qcow2", "-F", "qcow2"]);
        }
        create.AddRange(["x.qcow2", size.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Tools.QemuImg(dir.Path, [.. create]);
        bool v2 = options.Contains("0.10", StringComparison.Ordinal);
        Tools.QemuIo(dir.Path, "qcow2", "x.qcow2", RandomWrites(random, size, clusterSize, 30, compressed, zeroes: !v2 || !withBacking));

        Tools.QemuImg(dir.Path, "convert", "-f", "qcow2", "-O", "raw", "x.qcow2", "flat.raw");
        byte[] expected = File.ReadAllBytes(dir.File("flat.raw"));
        using (var device = ImageFormats.Qcow2.Open(dir.File("x.qcow2"), s_readOnly))
        {
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), DeviceDigest.Sha256(device));
            // Random ranges, across cluster, subcluster and table boundaries.
            for (int i = 0; i < 200; i++)
            {
                long offset = random.NextInt64(size);
                int length = (int)Math.Min(size - offset, random.Next(1, 3 * (int)Math.Min(clusterSize, 1 << 20)));
                byte[] buffer = new byte[length];
                device.Read(buffer, offset);
                Assert.True(expected.AsSpan((int)offset, length).SequenceEqual(buffer), $"sync read of {length} at {offset} differs (seed {seed})");
            }
        }
        await using (var device = await ImageFormats.Qcow2.OpenAsync(dir.File("x.qcow2"), s_readOnly, TestContext.Current.CancellationToken))
        {
            for (int i = 0; i < 200; i++)
            {
                long offset = random.NextInt64(size);
                int length = (int)Math.Min(size - offset, random.Next(1, 3 * (int)Math.Min(clusterSize, 1 << 20)));
                byte[] buffer = new byte[length];
                await device.ReadAsync(buffer, offset, TestContext.Current.CancellationToken);
                Assert.True(expected.AsSpan((int)offset, length).SequenceEqual(buffer), $"async read of {length} at {offset} differs (seed {seed})");
            }
        }
    }

    /// <summary>
    /// qemu-io commands: first whole-cluster compressed writes into distinct clusters (QEMU compresses only into unallocated
    /// clusters), then patterned writes of any alignment, zero writes (some unmapping) over them and elsewhere.
    /// </summary>
    internal static string[] RandomWrites(Random random, long size, long clusterSize, int count, bool compressed, bool zeroes)
    {
        var commands = new List<string>();
        long clusters = size / clusterSize;
        if (compressed)
        {
            var used = new HashSet<long>();
            for (int i = 0; i < count / 3; i++)
            {
                long first = random.NextInt64(clusters);
                int run = (int)Math.Min(clusters - first, random.Next(1, 4));
                if (Enumerable.Range(0, run).Any(k => used.Contains(first + k)))
                {
                    continue;
                }
                for (int k = 0; k < run; k++)
                {
                    used.Add(first + k);
                }
                // A one-byte pattern compresses; a cluster of the text pattern -P with a random byte does too.
                commands.Add($"write -c -P {random.Next(1, 255)} {first * clusterSize} {run * clusterSize}");
            }
        }
        for (int i = 0; i < count; i++)
        {
            if (zeroes && random.Next(4) == 0)
            {
                long start = random.NextInt64(clusters) * clusterSize;
                long length = Math.Min(size - start, clusterSize * random.Next(1, 4));
                commands.Add($"write -z {(random.Next(2) == 0 ? "-u " : "")}{start} {length}");
                continue;
            }
            long offset = random.NextInt64(size / 512) * 512 + (random.Next(3) == 0 ? random.Next(1, 512) : 0);
            long bytes = Math.Min(size - offset, random.Next(1, (int)Math.Min(4 * clusterSize, 1 << 20)));
            if (bytes > 0)
            {
                commands.Add($"write -P {random.Next(1, 255)} {offset} {bytes}");
            }
        }
        return [.. commands];
    }

    private static async Task<string> DigestAsync(BlockDevice device, int chunk)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[chunk];
        for (long offset = 0; offset < device.Size; offset += chunk)
        {
            int n = (int)Math.Min(chunk, device.Size - offset);
            await device.ReadAsync(buffer.AsMemory(0, n), offset, TestContext.Current.CancellationToken);
            hash.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
