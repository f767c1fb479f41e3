using System.Security.Cryptography;
using Qed.IO;

namespace Qed.Tests.Infrastructure;

/// <summary>Digests of what our engine reads from a whole device, comparable with <see cref="Tools.QemuFlattenDigest"/>.</summary>
public static class DeviceDigest
{
    public static string Sha256(BlockDevice device, int chunk = 1 << 20)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[chunk];
        for (long offset = 0; offset < device.Size; offset += chunk)
        {
            int n = (int)Math.Min(chunk, device.Size - offset);
            device.Read(buffer.AsMemory(0, n), offset);
            hash.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
