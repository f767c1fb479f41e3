using System.Buffers.Binary;
using System.Text.Json;
using Qed.Formats;
using Qed.Formats.Qcow2;
using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Formats;

/// <summary>The <c>encrypt</c> member of qcow2 info built from the LUKS header equals qemu-img info's, for several cipher setups; non-LUKS bytes give none.</summary>
public sealed class Qcow2LuksDescriptionTests
{
    private const uint CryptoExtension = 0x0537be77;

    public static TheoryData<string> Setups() => new()
    {
        "",
        "encrypt.cipher-alg=twofish-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha512",
        "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=xts,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha1",
        "encrypt.cipher-alg=serpent-256,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64",
    };

    [Theory]
    [MemberData(nameof(Setups))]
    public void Encrypt_detail_equals_qemu_img_info(string options)
    {
        using var dir = new TempDirectory();
        string image = dir.File("l.qcow2");
        string createOptions = "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10" + (options.Length > 0 ? "," + options : "");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=x", "-o", createOptions, image, "1M");

        using var json = JsonDocument.Parse(Tools.QemuImg(dir.Path, "info", "--output=json", image).StdOut);
        var expected = QemuInfoJson.ToImageInfo(json.RootElement).FormatSpecific.Single(d => d.Name == "encrypt");
        var ours = Qcow2LuksDescription.Describe(LuksHeader(image));
        Assert.NotNull(ours);
        Assert.Equal(Flatten(expected), Flatten(ours));
    }

    [Fact]
    public void The_fixture_Q16_is_described()
    {
        var ours = Qcow2LuksDescription.Describe(LuksHeader(Qcow2Fixtures.Get("Q16").Path));
        Assert.NotNull(ours);
        Assert.Contains("/cipher-alg=aes-256:Text", Flatten(ours), StringComparison.Ordinal);
    }

    [Fact]
    public void Bytes_that_are_not_a_usable_luks_header_give_none()
    {
        byte[] header = LuksHeader(Qcow2Fixtures.Get("Q16").Path);
        Assert.Null(Qcow2LuksDescription.Describe(header.AsSpan(0, Qcow2LuksDescription.HeaderLength - 1)));
        Assert.Null(Qcow2LuksDescription.Describe(new byte[Qcow2LuksDescription.HeaderLength]));
        byte[] version2 = (byte[])header.Clone();
        version2[7] = 2;
        Assert.Null(Qcow2LuksDescription.Describe(version2));
        byte[] unknownCipher = (byte[])header.Clone();
        "blowfish\0"u8.CopyTo(unknownCipher.AsSpan(8));
        Assert.Null(Qcow2LuksDescription.Describe(unknownCipher));
        byte[] noMode = (byte[])header.Clone();
        "xts\0"u8.CopyTo(noMode.AsSpan(40));
        Assert.Null(Qcow2LuksDescription.Describe(noMode));
    }

    /// <summary>The LUKS header bytes at the offset the qcow2 crypto header extension names.</summary>
    private static byte[] LuksHeader(string image)
    {
        byte[] file = File.ReadAllBytes(image);
        int position = (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(100));
        while (true)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(position));
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(position + 4));
            Assert.NotEqual(0u, type);
            if (type == CryptoExtension)
            {
                long offset = (long)BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan(position + 8));
                return file.AsSpan((int)offset, Qcow2LuksDescription.HeaderLength).ToArray();
            }
            position += 8 + (length + 7) / 8 * 8;
        }
    }

    /// <summary>The detail tree as one line per leaf (path=value:kind), so a difference shows where it is.</summary>
    private static string Flatten(ImageDetail detail, string path = "")
    {
        string here = path + (detail.Name.Length > 0 ? "/" + detail.Name : "/[]");
        return detail.Kind is ImageDetailKind.Object or ImageDetailKind.List
            ? here + ":" + detail.Kind + "\n" + string.Concat(detail.Children.Select(c => Flatten(c, here)))
            : here + "=" + detail.Value + ":" + detail.Kind + "\n";
    }
}
